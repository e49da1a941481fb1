"""``--format auto``: pick the container reader from the path (and a peek at the bytes)."""

from __future__ import annotations

import gzip
from pathlib import Path

from prefline.base.errors import PreflineError
from prefline.formats.hf import is_saved_dataset

FORMATS = ("auto", "jsonl", "json", "hh", "csv", "parquet", "hf")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
             ".parquet": "parquet", ".pq": "parquet"}


def _peek(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            return fh.read(4096).lstrip()
    except OSError as exc:
        raise PreflineError(f"cannot read file: {getattr(exc, 'strerror', None) or exc}",
                            path=str(path)) from None


def detect_format(path: Path) -> str:
    """One of jsonl/json/csv/parquet/hf for ``path``; HH transcripts read as jsonl.

    Raises PreflineError when the path is missing or its format cannot be recognised.
    """
    if not path.exists():
        raise PreflineError("cannot read file: no such file or directory", path=str(path))
    if path.is_dir():
        if is_saved_dataset(path):
            return "hf"
        raise PreflineError("unknown format: a folder that is not a saved Hugging Face dataset",
                            path=str(path))
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    head = _peek(path)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"{"):
        return "jsonl"
    if head.startswith(b"["):
        return "json"
    raise PreflineError(
        "unknown format: expected JSONL, JSON, CSV, Parquet or a saved HF dataset "
        f"(use --format, one of {', '.join(FORMATS[1:])})", path=str(path))
