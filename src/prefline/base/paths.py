"""Where prefline keeps its files: the user's data dir, overridable by environment."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    """``PREFLINE_HOME`` or the platform's user data dir; created on first use."""
    root = os.environ.get("PREFLINE_HOME")
    path = Path(root) if root else Path(platformdirs.user_data_dir("prefline"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Converted model weights and cached reference log-probs live here."""
    root = os.environ.get("PREFLINE_CACHE")
    path = Path(root) if root else data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db_url() -> str:
    """``PREFLINE_DB`` (a URL or a file path) or ``sqlite:///<data dir>/prefline.db``."""
    env = os.environ.get("PREFLINE_DB")
    if env:
        return env if "://" in env else f"sqlite:///{Path(env).expanduser().resolve()}"
    return f"sqlite:///{data_dir() / 'prefline.db'}"
