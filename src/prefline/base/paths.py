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


CACHE_TAG = "CACHEDIR.TAG"
"""Marks a folder prefline made as its cache (the Cache Directory Tagging standard, which
backup tools honour); ``prefline cache clear`` deletes only inside a tagged root."""

_TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
             "# This file is a cache directory tag created by prefline.\n"
             "# Everything here is derived data; `prefline cache info` lists it.\n")


def cache_dir() -> Path:
    """Cached derived data (reference log-probs, converted models, judge replies):
    ``PREFLINE_CACHE``, else ``<data dir>/cache``; created (and tagged) on first use.

    A folder is tagged only when prefline creates it, finds it empty, or it is the default
    location, so pointing ``PREFLINE_CACHE`` at a folder with other files in it never
    makes those files clearable. What each subfolder holds: :mod:`prefline.base.cache`.
    """
    root = os.environ.get("PREFLINE_CACHE")
    path = Path(root) if root else data_dir() / "cache"
    tag = path / CACHE_TAG
    if not tag.exists():
        fresh = not path.exists() or not any(path.iterdir()) or not root
        path.mkdir(parents=True, exist_ok=True)
        if fresh:
            write_cache_tag(path)
    return path


def write_cache_tag(path: Path) -> None:
    """Mark ``path`` as prefline's cache root (see :data:`CACHE_TAG`)."""
    (path / CACHE_TAG).write_text(_TAG_TEXT)


def default_db_url() -> str:
    """``PREFLINE_DB`` (a URL or a file path) or ``sqlite:///<data dir>/prefline.db``."""
    env = os.environ.get("PREFLINE_DB")
    if env:
        return env if "://" in env else f"sqlite:///{Path(env).expanduser().resolve()}"
    return f"sqlite:///{data_dir() / 'prefline.db'}"
