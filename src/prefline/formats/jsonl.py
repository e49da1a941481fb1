"""JSON Lines and JSON arrays, plain or gzip-compressed, as ``(line, record)`` pairs."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prefline.base.errors import PreflineError


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


def open_text(path: Path) -> AbstractContextManager[IO[str]]:
    """Open a UTF-8 text file (gunzipped when it ends in ``.gz``) as a context manager;
    any OS error → PreflineError."""
    return _opened(path, "rt", "utf-8")


def read_jsonl(path: Path, *, keep_bad: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, parsed object)`` for each non-blank line (1-based lines).

    A line that is not JSON (or not UTF-8) raises PreflineError, or with ``keep_bad`` is
    yielded as a :class:`BadLine` so that the caller can reject it and read on.
    """
    if keep_bad:
        yield from _read_jsonl_keeping_bad(path)
        return
    with open_text(path) as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, start=1):  # noqa: B007 - used in the except
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise PreflineError(_malformed(line, exc), path=str(path), line=lineno) from None
        except UnicodeDecodeError:
            raise PreflineError("not valid UTF-8 text", path=str(path), line=lineno + 1) from None


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
    with open_text(path) as fh:
        try:
            text = fh.read()
        except UnicodeDecodeError:
            raise PreflineError("not valid UTF-8 text", path=str(path)) from None
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
                fh.write(json.dumps(row, ensure_ascii=False, default=default) + "\n")
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
