"""JSON Lines and JSON arrays, plain or gzip-compressed, as ``(line, record)`` pairs."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from prefline.base.errors import PreflineError


@contextmanager
def open_text(path: Path) -> Iterator[IO[str]]:
    """Open a text file (gunzipped when it ends in ``.gz``); any OS error → PreflineError."""
    try:
        if path.suffix == ".gz":
            fh: IO[str] = gzip.open(path, "rt", encoding="utf-8")  # noqa: SIM115 - closed below
        else:
            fh = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise PreflineError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from None
    try:
        yield fh
    except (OSError, EOFError) as exc:  # truncated or not-really-gzip files fail while reading
        raise PreflineError(f"cannot read file: {exc}", path=str(path)) from None
    finally:
        fh.close()


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, parsed object)`` for each non-blank line (1-based lines)."""
    with open_text(path) as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, start=1):  # noqa: B007 - used in the except
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise PreflineError(f"malformed JSON ({exc.msg} at column {exc.colno})",
                                        path=str(path), line=lineno) from None
        except UnicodeDecodeError:
            raise PreflineError("not valid UTF-8 text", path=str(path), line=lineno + 1) from None


def read_json(path: Path) -> Iterator[tuple[int, Any]]:
    """A ``.json`` file holding one array of records (record N reported as line N),
    or JSON Lines under a ``.json`` name."""
    with open_text(path) as fh:
        try:
            text = fh.read()
        except UnicodeDecodeError:
            raise PreflineError("not valid UTF-8 text", path=str(path)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several top-level values: JSON Lines
            yield from read_jsonl(path)
            return
        raise PreflineError(f"malformed JSON ({exc.msg} at column {exc.colno})",
                            path=str(path), line=exc.lineno) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise PreflineError("expected a JSON array of records", path=str(path))
    yield from enumerate(data, start=1)


def write_jsonl(out: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON Lines atomically (temp file + rename); return ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
