"""What prefline caches on disk, where, how much, and clearing it (``prefline cache``).

Every cache lives under one root, :func:`prefline.base.paths.cache_dir`: ``$PREFLINE_CACHE``,
else ``$PREFLINE_HOME/cache``, else ``cache`` in the platform's user data dir. Each kind of
entry has its own folder (:data:`KINDS`, the one place those names live). Every entry is
derived data keyed by the content hash of its inputs (or, for ``bench``, a benchmark's
log), so deleting it is always safe: the next run that needs it recomputes it. Run folders (``--out``; by default
``<data dir>/runs``) and the store are results, not caches: :func:`info` reports their size,
:func:`clear` never touches them.

Clearing deletes only the kind folders inside a root that prefline made: the root must hold
the ``CACHEDIR.TAG`` that :func:`~prefline.base.paths.cache_dir` writes when it creates the
folder (or hold nothing but kind folders), so ``PREFLINE_CACHE=~`` can never delete
``~/models``.
A symlinked kind folder is unlinked, never followed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from prefline.base.errors import PreflineError
from prefline.base.paths import CACHE_TAG, cache_dir, data_dir, write_cache_tag
from prefline.base.stage import StageResult


@dataclass(frozen=True)
class Kind:
    """One kind of cached entry: its name on the command line, its folder, what it holds."""

    name: str
    folder: str
    what: str


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("ref-logps", "ref_logps",
         "reference log-probs of policy-training data (train dpo, the demo), one file per "
         "data set x reference weights x precision; a miss costs one forward pass"),
    Kind("models", "models",
         "converted model weights: a GGUF file (the embedded SmolLM2-135M-Instruct) "
         "dequantised once to safetensors (~0.5 GB; ~15 s to redo)"),
    Kind("judges", "judges",
         "replies of OpenAI-compatible judges (openai:URL), keyed by the judge's settings "
         "and the request; a miss asks the server again"),
    Kind("generations", "generations",
         "completions from OpenAI-compatible generation servers (--backend openai:URL), "
         "keyed by the URL, model and the exact request; a miss asks the server again"),
    Kind("bench", "bench",
         "results of each `prefline bench` run, written as it goes so an interrupted "
         "benchmark keeps what it measured"),
)}
"""Every kind, by command-line name (``prefline cache clear --what NAME``)."""

CLEAR_CHOICES = (*KINDS, "all")

FILES_HELP = ("Files: the data dir is $PREFLINE_HOME (default: the user data dir); caches "
              "(reference log-probs, converted models) go to $PREFLINE_CACHE (default: "
              "<data dir>/cache), listed by `prefline cache info`.")
"""One sentence for the ``--help`` of commands that write run folders and caches."""


def kind_dir(name: str) -> Path:
    """The folder of one kind of entry, e.g. ``kind_dir("ref-logps")`` (not created here)."""
    return cache_dir() / KINDS[name].folder


@dataclass(frozen=True)
class Usage:
    """What one folder holds: immediate entries, files below it, their bytes."""

    name: str
    path: Path
    what: str
    entries: int
    files: int
    bytes: int


@dataclass(frozen=True)
class CacheInfo(StageResult):
    """``prefline cache info``: the cache root, each kind's usage, and what else is there."""

    root: Path
    """The cache root (``$PREFLINE_CACHE``, else ``$PREFLINE_HOME/cache``)."""
    set_by: str
    """Which setting chose the root: PREFLINE_CACHE, PREFLINE_HOME or the default."""
    data_dir: Path
    """``$PREFLINE_HOME`` or the user data dir: the default store and run folders."""
    caches: tuple[Usage, ...]
    other: tuple[Usage, ...]
    """Entries of the root that are no known kind (left alone by clear)."""
    runs: Usage
    """Default run folders (``<data dir>/runs``): results, not a cache; never cleared."""

    @property
    def total_bytes(self) -> int:
        return sum(u.bytes for u in self.caches)


@dataclass(frozen=True)
class ClearResult(StageResult):
    """What ``prefline cache clear`` removed (or, with ``done=False``, would remove)."""

    root: Path
    removed: tuple[Usage, ...]
    done: bool

    @property
    def bytes(self) -> int:
        return sum(u.bytes for u in self.removed)

    @property
    def files(self) -> int:
        return sum(u.files for u in self.removed)


def _usage(name: str, path: Path, what: str) -> Usage:
    """Sizes without following symlinks (a link counts as itself, not what it points to)."""
    if not (path.is_symlink() or path.exists()):
        return Usage(name, path, what, 0, 0, 0)
    if path.is_symlink() or not path.is_dir():
        return Usage(name, path, what, 1, 1, path.lstat().st_size)
    entries, files, total = 0, 0, 0
    for top, dirs, names in os.walk(path):
        if Path(top) == path:
            entries = len(dirs) + len(names)
        for n in names:
            files += 1
            with contextlib.suppress(OSError):  # removed while we walked (a run's temp file)
                total += (Path(top) / n).lstat().st_size
    return Usage(name, path, what, entries, files, total)


def _set_by() -> str:
    for var in ("PREFLINE_CACHE", "PREFLINE_HOME"):
        if os.environ.get(var):
            return var
    return "default"


def info() -> CacheInfo:
    """Every kind's usage under the cache root, other entries there, and the run folders."""
    root = cache_dir()
    caches = tuple(_usage(k.name, root / k.folder, k.what) for k in KINDS.values())
    known = {k.folder for k in KINDS.values()} | {CACHE_TAG}
    other = tuple(_usage(p.name, p, "not written by prefline's caches")
                  for p in sorted(root.iterdir()) if p.name not in known)
    home = data_dir()
    runs = _usage("runs", home / "runs", "default run folders (--out not given): results, "
                                         "not a cache; delete the ones you no longer need by hand")
    return CacheInfo(root, _set_by(), home, caches, other, runs)


def _check_ours(root: Path) -> None:
    """Refuse a root prefline did not make; a root holding nothing but kind folders (a cache
    from before the tag existed) is tagged now."""
    if (root / CACHE_TAG).is_file():
        return
    known = {k.folder for k in KINDS.values()}
    if all(p.name in known and not p.is_symlink() for p in root.iterdir()):
        write_cache_tag(root)
        return
    raise PreflineError(f"{root} has no {CACHE_TAG} and holds more than prefline's caches, so "
                        "prefline did not create it as its cache; refusing to delete anything "
                        "in it (point PREFLINE_CACHE at a folder of its own, or delete the "
                        "entries by hand)", field="PREFLINE_CACHE")


def clear(what: str, *, dry_run: bool = False) -> ClearResult:
    """Delete one kind's folder (or every kind's, ``what="all"``) under the cache root;
    ``dry_run`` only measures what would go. Nothing outside the root is ever deleted."""
    if what not in CLEAR_CHOICES:
        raise PreflineError(f"unknown cache {what!r}; expected one of {', '.join(CLEAR_CHOICES)}",
                            field="what")
    root = cache_dir()
    _check_ours(root)
    names = list(KINDS) if what == "all" else [what]
    targets = [_usage(n, root / KINDS[n].folder, KINDS[n].what) for n in names]
    targets = [u for u in targets if u.path.is_symlink() or u.path.exists()]
    if not dry_run:
        for u in targets:
            if u.path.is_symlink() or not u.path.is_dir():
                u.path.unlink()
            else:
                shutil.rmtree(u.path)  # removes symlinks inside, never their targets
    return ClearResult(root, tuple(targets), done=not dry_run)


def human_bytes(n: int) -> str:
    """``1536`` -> ``1.5 KB`` (decimal units, as ``du --si``)."""
    if n < 1000:
        return f"{n} B"
    size, unit = n / 1000, "KB"
    for bigger in ("MB", "GB", "TB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{size:.1f} {unit}"
