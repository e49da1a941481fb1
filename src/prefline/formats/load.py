"""Read any supported file into typed examples, without touching the store.

``load_examples(path)`` is what trainers and judges call for ``--data FILE``; the store
importer (``prefline.store.ingest``) calls :func:`load_records` to also get annotators.
The whole file is validated before anything is returned, so a bad line anywhere fails
the call with a PreflineError naming file, line and field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.formats.detect import FORMATS, detect_format
from prefline.formats.examples import PreferencePair, RankingExample
from prefline.formats.hf import read_hf
from prefline.formats.hh import is_transcript
from prefline.formats.jsonl import read_json, read_jsonl
from prefline.formats.records import Example, IdenticalPair, Record, Where, parse_record
from prefline.formats.tabular import read_csv, read_parquet

Reader = Callable[[Path], Iterator[tuple[int, Any]]]
_READERS: dict[str, Reader] = {
    "jsonl": read_jsonl, "hh": read_jsonl, "json": read_json, "csv": read_csv,
    "parquet": read_parquet, "hf": read_hf,
}


def _check_hh(raw: Any, where: Where) -> None:
    """``--format hh`` promises transcripts: say so when a record is something else."""
    for field in ("chosen", "rejected"):
        if not isinstance(raw, dict) or not is_transcript(raw.get(field)):
            raise where.error("expected an HH transcript ('\\n\\nHuman: ... \\n\\nAssistant: ...')",
                              field)


def _hh_record(raw: Any) -> bool:
    return isinstance(raw, dict) and "prompt" not in raw and is_transcript(raw.get("chosen"))


def load_records(path: str | Path, format: str = "auto",
                 progress: Callable[[int], None] | None = None, *,
                 skip_identical: bool | None = None,
                 skipped: list[int] | None = None) -> list[Record]:
    """Every record of ``path`` validated, in file order.

    ``format`` is one of ``FORMATS``; ``progress`` is called with the number of records
    read so far (every 1,000 records) for progress bars. A pair whose chosen equals its
    rejected is an error, except with ``skip_identical=True``, or by default (None) in HH
    transcripts, whose public releases contain such pairs; the line numbers of skipped
    records are appended to ``skipped``.
    """
    path = Path(path)
    if format not in FORMATS:
        raise PreflineError(f"unknown format '{format}'; expected one of {', '.join(FORMATS)}",
                            path=str(path), field="format")
    fmt = detect_format(path) if format == "auto" else format
    if not path.exists():
        raise PreflineError("cannot read file: no such file or directory", path=str(path))
    records: list[Record] = []
    for line, raw in _READERS[fmt](path):
        where = Where(str(path), line)
        if fmt == "hh":
            _check_hh(raw, where)
        try:
            records.append(parse_record(raw, where))
        except IdenticalPair:
            if not (skip_identical or (skip_identical is None and _hh_record(raw))):
                raise
            if skipped is not None:
                skipped.append(line)
        if progress is not None and len(records) % 1000 == 0:
            progress(len(records))
    if not records:
        raise PreflineError("the file holds no usable records", path=str(path))
    return records


def load_examples(path: str | Path, format: str = "auto") -> list[Example]:
    """``PreferencePair``/``UnpairedExample``/``RankingExample``/``RatingExample`` per record."""
    return [r.example for r in load_records(path, format)]


def ranking_pairs(ranking: RankingExample) -> list[PreferencePair]:
    """All ``n*(n-1)/2`` pairs implied by a best-first ranking (better response chosen)."""
    r = ranking.responses
    return [
        PreferencePair(prompt=ranking.prompt, chosen=r[i], rejected=r[j], tags=ranking.tags,
                       prompt_key=ranking.prompt_key)
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
