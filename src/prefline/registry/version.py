"""The code version recorded with every artifact: package version, commit, and dirty state.

``0.1.0+1a2b3c4d5e6f`` for a clean checkout; ``0.1.0+1a2b3c4d5e6f.dirty-9f8e7d6c5b4a`` when
tracked files differ from the commit or untracked files sit under ``src/`` (the suffix is a
hash of those changes, so two different dirty trees never share a version). A run from a
dirty tree is never recorded as clean: if git answers for the commit but then fails, the
suffix is ``.dirty-unknown``. Outside a checkout (an installed wheel) it is the package
version alone.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from prefline.base import VERSION as __version__

PACKAGE_DIR = Path(__file__).resolve().parents[1]
_cache: dict[str, str] = {}


def code_version(cwd: str | Path | None = None) -> str:
    """The version string for the checkout holding ``cwd`` (default: prefline's own source).

    prefline's own version is computed once per process (the code that runs was loaded
    from that tree); an explicit ``cwd`` is looked up every time. Never raises.
    """
    if cwd is not None:
        return _compute(Path(cwd))
    if "self" not in _cache:
        _cache["self"] = _compute(PACKAGE_DIR)
    return _cache["self"]


def clear_code_version_cache() -> None:
    """Forget the per-process answer (tests that change the tree call this)."""
    _cache.clear()


def _git(cwd: Path, *args: str) -> bytes:
    # GIT_OPTIONAL_LOCKS=0: ``git status`` must not take index.lock from under someone
    # committing in the same tree.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, timeout=30,
                          check=True).stdout


def _compute(cwd: Path) -> str:
    try:
        top = Path(_git(cwd, "rev-parse", "--show-toplevel").decode().strip())
        # The folder must be tracked by that checkout: a wheel installed in a virtualenv
        # inside somebody else's repository is not a prefline checkout.
        _git(cwd, "ls-files", "--error-unmatch", "--", ".")
        commit = _git(top, "rev-parse", "HEAD").decode().strip()[:12]
    except (OSError, subprocess.SubprocessError, UnicodeDecodeError, ValueError):
        return __version__
    if not commit:
        return __version__
    base = f"{__version__}+{commit}"
    try:
        digest = dirty_digest(top)
    except (OSError, subprocess.SubprocessError, ValueError):
        return f"{base}.dirty-unknown"
    return base if digest is None else f"{base}.dirty-{digest}"


def dirty_digest(top: Path) -> str | None:
    """12 hex digits of sha256 over ``git diff HEAD`` and the untracked files under ``src/``,
    or None when the tree matches the commit."""
    status = _git(top, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    tracked_changed, untracked = False, []
    entries = iter(status.split(b"\0"))
    for entry in entries:
        if not entry:
            continue
        xy, path = entry[:2], entry[3:]
        if xy == b"??":
            if path.startswith(b"src/"):
                untracked.append(path)
            continue
        tracked_changed = True
        if xy[:1] in (b"R", b"C"):  # renames and copies carry the old path as the next entry
            next(entries, None)
    if not tracked_changed and not untracked:
        return None
    h = hashlib.sha256(_git(top, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff",
                            "--no-textconv"))
    for path in sorted(untracked):
        h.update(b"\0untracked\0" + path + b"\0")
        h.update((top / os.fsdecode(path)).read_bytes())
    return h.hexdigest()[:12]
