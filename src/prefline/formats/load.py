"""Read any supported file into typed examples, without touching the store.

``load_examples(path)`` is what trainers and judges call for ``--data FILE``; the store
importer (``prefline.store.ingest``) calls :func:`load_records` to also get annotators.
The whole file is validated before anything is returned. A bad record fails the call
with a :class:`BadRecord` naming file, line and field, or, with ``on_bad="skip"``, is
set aside as a :class:`Rejected` (line, reason, raw record) while the rest load.
Problems with the file as a whole (unreadable, unknown format, a broken JSON array or
CSV quoting) fail the call under either policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from operator import attrgetter
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.formats.detect import FORMATS, detect_format
from prefline.formats.examples import PreferencePair, RankingExample
from prefline.formats.hf import read_hf
from prefline.formats.hh import is_transcript
from prefline.formats.jsonl import BadLine, read_json, read_jsonl
from prefline.formats.records import (
    BadRecord,
    Example,
    IdenticalPair,
    Record,
    Where,
    check_storable,
    parse_record,
)
from prefline.formats.shapes import SHAPE_FORMATS, Native, detect_shape, to_native
from prefline.formats.tabular import read_csv, read_parquet

ON_BAD = ("fail", "skip")
ALL_FORMATS = FORMATS + SHAPE_FORMATS
"""Containers (``jsonl``, ``csv``, ...) and record shapes (``ultrafeedback``, ``thumbs``, ...):
with a shape, the container is told by the file name and content."""

Reader = Callable[[Path], Iterator[tuple[int, Any]]]
_READERS: dict[str, Reader] = {
    "jsonl": read_jsonl, "hh": read_jsonl, "json": read_json, "csv": read_csv,
    "parquet": read_parquet, "hf": read_hf,
}


@dataclass(frozen=True)
class Rejected:
    """A record left out under ``on_bad="skip"``: its line (or row), why, and the record as
    read (the raw text when the line was not JSON)."""

    line: int
    reason: str
    record: Any

    def to_row(self) -> dict[str, Any]:
        """The rejects-file row: ``{"line": n, "reason": "...", "record": ...}``."""
        return {"line": self.line, "reason": self.reason, "record": self.record}


def check_on_bad(on_bad: str) -> None:
    """Refuse an unknown bad-record policy (one of ``ON_BAD``)."""
    if on_bad not in ON_BAD:
        raise PreflineError(f"unknown policy {on_bad!r} for bad records; expected fail or skip",
                            field="on_bad")


def _rows(fmt: str, path: Path) -> Iterator[tuple[int, Any]]:
    # JSON Lines readers hand malformed lines back (as BadLine) so that they can be rejected
    # like any other bad record; the other containers have no per-line syntax to get wrong.
    if fmt in ("jsonl", "hh"):
        return read_jsonl(path, keep_bad=True)
    if fmt == "json":
        return read_json(path, keep_bad=True)
    return _READERS[fmt](path)


def _check_hh(raw: Any, where: Where) -> None:
    """``--format hh`` promises transcripts: say so when a record is something else."""
    for field in ("chosen", "rejected"):
        if not isinstance(raw, dict) or not is_transcript(raw.get(field)):
            raise where.error("expected an HH transcript ('\\n\\nHuman: ... \\n\\nAssistant: ...')",
                              field)


def _hh_record(raw: Any) -> bool:
    return isinstance(raw, dict) and "prompt" not in raw and is_transcript(raw.get("chosen"))


def _parse(raw: Any, where: Where, fmt: str, shape: str | None,
           check: Callable[[Record], None] | None) -> list[Record]:
    """One raw row → its validated records (an UltraFeedback row holds several); raises
    BadRecord naming the row's own field names."""
    if isinstance(raw, BadLine):
        raise where.error(raw.reason)
    if fmt == "hh":
        _check_hh(raw, where)
    found = shape or (detect_shape(raw) if isinstance(raw, dict) else None)
    if found is None or not isinstance(raw, dict):
        natives: list[Native] = [(raw, {})]
    else:
        check_storable(raw, where)
        natives = to_native(found, raw, where, explicit=shape is not None)
    out = []
    for native, renames in natives:
        try:
            rec = parse_record(native, where)
        except BadRecord as exc:
            if exc.field not in renames:
                raise
            raise type(exc)(exc.message, path=exc.path, line=exc.line,
                            field=renames[exc.field]) from None
        if check is not None:
            check(rec)
        out.append(rec)
    return out


_SHOWN: dict[type, Callable[[Any], tuple[Any, ...]]] = {}  # example type -> its repr's fields
_AS_IS = {str, type(None), bool}


def _identity(rec: Record) -> tuple[Any, ...]:
    """Who judged what, and how: two records with equal identities are one vote.

    What ``repr(example)`` shows, built without the repr (which was a fifth of an import's
    CPU at 10⁵ records): the prompt stands as its content hash, strings, booleans and None
    as themselves (the records keep the strings alive anyway), other values as their repr."""
    ex = rec.example
    shown = _SHOWN.get(type(ex))
    if shown is None:
        shown = _SHOWN[type(ex)] = attrgetter(
            *(f.name for f in fields(ex) if f.repr and f.name != "prompt"))
    return (rec.annotator, rec.annotator_kind, type(ex).__name__,
            *[v if type(v) in _AS_IS else repr(v) for v in shown(ex)])


def load_records(path: str | Path, format: str = "auto",
                 progress: Callable[[int], None] | None = None, *,
                 skip_identical: bool | None = None,
                 skipped: list[int] | None = None,
                 on_bad: str = "fail",
                 rejected: list[Rejected] | None = None,
                 check: Callable[[Record], None] | None = None,
                 duplicates: list[tuple[int, int]] | None = None) -> list[Record]:
    """Every valid record of ``path``, in file order, each judgment once.

    ``format`` is one of ``ALL_FORMATS`` (a container, or a record shape whose container is
    detected); ``progress`` is called with the number of records
    read so far (every 1,000 records) for progress bars. A pair whose chosen equals its
    rejected is skipped with ``skip_identical=True``, or by default (None) in HH
    transcripts, whose public releases contain such pairs; the line numbers of skipped
    records are appended to ``skipped``. Any other bad record raises :class:`BadRecord`
    under ``on_bad="fail"``; under ``"skip"`` it is appended to ``rejected`` (in file
    order) instead. ``check`` is an extra per-record rule of the caller's (it raises
    BadRecord). Given a ``duplicates`` list (the store importer: one judgment is one vote), a
    record repeating an earlier one (same annotator, same judgment) is left out and
    ``(line, line of the first)`` appended to it; without it every record is returned. A file with no valid record raises PreflineError under either policy.
    """
    path = Path(path)
    check_on_bad(on_bad)
    if format not in ALL_FORMATS:
        raise PreflineError(f"unknown format '{format}'; expected one of "
                            f"{', '.join(ALL_FORMATS)}", path=str(path), field="format")
    shape = format if format in SHAPE_FORMATS else None
    fmt = detect_format(path) if format == "auto" or shape else format
    if not path.exists():
        raise PreflineError("cannot read file: no such file or directory", path=str(path))
    records: list[Record] = []
    bad: list[Rejected] = []
    identical: list[int] = []
    first: dict[tuple[Any, ...], int] = {}
    for n, (line, raw) in enumerate(_rows(fmt, path), start=1):
        try:
            for rec in _parse(raw, Where(str(path), line), fmt, shape, check):
                key = None if duplicates is None else _identity(rec)
                if duplicates is not None and key in first:
                    duplicates.append((line, first[key]))
                    continue
                if key is not None:
                    first[key] = line
                records.append(rec)
        except IdenticalPair as exc:
            if skip_identical or (skip_identical is None and _hh_record(raw)):
                identical.append(line)
            elif on_bad == "fail":
                raise
            else:
                bad.append(Rejected(line, exc.reason, raw))
        except BadRecord as exc:
            if on_bad == "fail":
                raise
            bad.append(Rejected(line, exc.reason, raw.text if isinstance(raw, BadLine) else raw))
        if progress is not None and n % 1000 == 0:
            progress(n)
    if rejected is not None:
        rejected.extend(bad)
    if skipped is not None:
        skipped.extend(identical)
    if not records:
        raise no_valid_records(path, bad, identical)
    return records


def no_valid_records(path: Path, bad: list[Rejected],
                     identical: list[int] | None = None) -> PreflineError:
    """The one sentence for a file of which nothing can be imported, saying why: empty,
    every pair skipped as identical (``identical``: their lines), or every record bad."""
    same = ""
    if identical:
        n = len(identical)
        same = (f"{'the only pair has' if n == 1 else f'all {n} pairs have'} identical chosen "
                f"and rejected (line {identical[0]}{', ...' if n > 1 else ''}), so there is no "
                "preference to learn")
    if not bad:
        why = same or "it has no records"
        return PreflineError(f"the file holds no usable records: {why}", path=str(path))
    first = bad[0]
    also = f"; {len(identical)} more skipped as identical pairs" if identical else ""
    return PreflineError(f"none of its records is valid ({len(bad)} rejected; the first, "
                         f"line {first.line}: {first.reason}{also}); nothing was imported",
                         path=str(path))


def load_examples(path: str | Path, format: str = "auto") -> list[Example]:
    """``PreferencePair``/``UnpairedExample``/``RankingExample``/``RatingExample`` per record."""
    return [r.example for r in load_records(path, format)]


def ranking_pairs(ranking: RankingExample) -> list[PreferencePair]:
    """All ``n*(n-1)/2`` pairs implied by a best-first ranking (better response chosen),
    each keeping the ranking's user and segment."""
    r = ranking.responses
    return [
        PreferencePair(prompt=ranking.prompt, chosen=r[i], rejected=r[j], tags=ranking.tags,
                       prompt_key=ranking.prompt_key, user=ranking.user,
                       segment=dict(ranking.segment))
        for i in range(len(r)) for j in range(i + 1, len(r))
    ]


def load_pairs(path: str | Path, format: str = "auto") -> list[PreferencePair]:
    """Preference pairs from ``path``; rankings expand into their implied pairs.

    Unpaired (KTO) and rating records carry no preference between two responses, so a
    file holding them is refused with the offending line.
    """
    pairs: list[PreferencePair] = []
    for rec in load_records(path, format):
        ex = rec.example
        if isinstance(ex, PreferencePair):
            pairs.append(ex)
        elif isinstance(ex, RankingExample):
            pairs.extend(ranking_pairs(ex))
        else:
            raise PreflineError("expected preference pairs (prompt/chosen/rejected) or rankings",
                                path=str(path), line=rec.line, field="chosen")
    return pairs
