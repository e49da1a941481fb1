"""JSON Lines and JSON arrays, plain or gzip-compressed, as ``(line, record)`` pairs."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.base.text import BOM, decode_utf8

BOM_BYTES = BOM.encode("utf-8")


@dataclass(frozen=True)
class BadLine:
    """A line that is not a JSON value (or not UTF-8), yielded instead of raising when the
    caller keeps bad lines: ``text`` is the raw line, ``reason`` says what is wrong."""

    text: str
    reason: str


@contextmanager
def _opened(path: Path, mode: str, encoding: str | None) -> Iterator[Any]:
    try:
        if path.suffix == ".gz":
            fh: Any = gzip.open(path, mode, encoding=encoding)  # noqa: SIM115 - closed below
        else:
            fh = open(path, mode, encoding=encoding)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise PreflineError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from None
    try:
        yield fh
    except (OSError, EOFError) as exc:  # truncated or not-really-gzip files fail while reading
        raise PreflineError(f"cannot read file: {exc}", path=str(path)) from None
    finally:
        fh.close()


def read_text(path: Path) -> str:
    """The whole UTF-8 file (gunzipped when ``.gz``) without a BOM; invalid UTF-8 is reported
    with its line (:func:`prefline.base.text.decode_utf8`), OS errors as PreflineError."""
    with _opened(path, "rb", None) as fh:
        data = fh.read()
    return decode_utf8(data, path=str(path))


def read_jsonl(path: Path, *, keep_bad: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, parsed object)`` for each non-blank line (1-based lines).

    A line that is not JSON (or not UTF-8) raises PreflineError naming that line, or with
    ``keep_bad`` is yielded as a :class:`BadLine` so that the caller can reject it and read
    on. A UTF-8 byte-order mark at the start of the file is ignored.
    """
    for lineno, row in _read_jsonl_keeping_bad(path):
        if isinstance(row, BadLine) and not keep_bad:
            raise PreflineError(row.reason, path=str(path), line=lineno)
        yield lineno, row


def _malformed(line: str, exc: json.JSONDecodeError) -> str:
    # exc.colno counts from the line's end-of-line character onwards when the record is cut
    # short ("line 2 column 1"), so give the offset within the line, capped at its end.
    column = min(exc.pos, len(line.rstrip("\r\n"))) + 1
    return f"malformed JSON ({exc.msg} at column {column})"


def _read_jsonl_keeping_bad(path: Path) -> Iterator[tuple[int, Any]]:
    # Bytes, decoded line by line: a stray non-UTF-8 byte spoils its own line, not the rest
    # of the file (and this is as fast as text mode). Lines end at b"\n", as JSON Lines says.
    with _opened(path, "rb", None) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(BOM_BYTES):
                raw = raw[len(BOM_BYTES):]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                yield lineno, BadLine(text, "not valid UTF-8 text")
                continue
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, BadLine(line.rstrip("\r\n"), _malformed(line, exc))


def read_json(path: Path, *, keep_bad: bool = False) -> Iterator[tuple[int, Any]]:
    """A ``.json`` file holding one array of records (record N reported as line N),
    or JSON Lines under a ``.json`` name (``keep_bad`` as for :func:`read_jsonl`; a broken
    array has no lines to keep, so it always raises)."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several top-level values: JSON Lines
            yield from read_jsonl(path, keep_bad=keep_bad)
            return
        raise PreflineError(f"malformed JSON ({exc.msg} at column {exc.colno})",
                            path=str(path), line=exc.lineno) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise PreflineError("expected a JSON array of records", path=str(path))
    yield from enumerate(data, start=1)


def stage_jsonl(out: Path, rows: Iterable[dict[str, Any]],
                default: Callable[[Any], Any] | None = None) -> Path:
    """Write rows as JSON Lines to a hidden temp file next to ``out`` and return its path.

    The caller publishes it with ``os.replace(tmp, out)`` (atomic: readers see the old file
    or the whole new one) or deletes it; nothing is left behind when writing fails.
    ``default`` is :func:`json.dumps`'s hook for values JSON cannot hold.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                try:
                    fh.write(json.dumps(row, ensure_ascii=False, default=default) + "\n")
                except UnicodeEncodeError:  # a lone surrogate (a rejected record): escaped,
                    fh.write(json.dumps(row, default=default) + "\n")  # still valid JSON
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_jsonl(out: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON Lines atomically (temp file + rename); return ``out``."""
    tmp = stage_jsonl(out, rows)
    try:
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
