"""CSV and Parquet tables: one row per record; list/object cells may be JSON-encoded."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.formats.jsonl import read_text

_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
_NUMBERS = ("strength", "rating", "score")
_FLAGS = ("label", "tie")


def decode_cells(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells are strings: decode JSON lists/objects, booleans and numbers by field.

    Empty cells become missing fields, so a blank ``chosen`` reads as "missing" rather
    than as an empty answer.
    """
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key is None or value is None or value == "":
            continue
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith(("[", "{")):
                # Plain text that merely starts with a bracket stays text.
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(stripped)
            elif key in _FLAGS and stripped.lower() in _BOOLS:
                value = _BOOLS[stripped.lower()]
            elif key in _NUMBERS:
                # A non-number stays a string: the record parser names the mistyped field.
                with contextlib.suppress(ValueError):
                    value = float(stripped)
        out[key] = value
    return out


def read_csv(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line of the row's start, record)``; the header is line 1."""
    # Decoded whole first: invalid UTF-8 is then reported on its own line (a text stream
    # fails a whole buffer ahead), and a BOM never sticks to the first column's name.
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    start = 2
    try:
        for row in reader:
            yield start, decode_cells(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise PreflineError(f"malformed CSV ({exc})", path=str(path), line=start) from None


def read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(row number, record)``, row 1 being the first data row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise PreflineError(f"cannot read Parquet file: {exc}", path=str(path)) from None
    for i, row in enumerate(table.to_pylist(), start=1):
        yield i, decode_cells(row)
