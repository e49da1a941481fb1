"""Hugging Face ``datasets`` saved with ``save_to_disk`` (a Dataset or a DatasetDict)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.formats.tabular import decode_cells


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return path.is_dir() and any(
        (path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def read_hf(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(row number, record)`` over every split in order (rows numbered across splits)."""
    from datasets import Dataset, load_from_disk

    if not is_saved_dataset(path):
        raise PreflineError("not a dataset folder written by datasets' save_to_disk", path=str(path))
    try:
        loaded = load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise PreflineError(f"cannot load dataset: {exc}", path=str(path)) from None
    splits = [loaded] if isinstance(loaded, Dataset) else [loaded[k] for k in sorted(loaded)]
    row = 0
    for split in splits:
        for rec in split:
            row += 1
            yield row, decode_cells(dict(rec))
