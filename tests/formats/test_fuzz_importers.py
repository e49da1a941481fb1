"""Property-based fuzzing of every importer entry point (issue 16): whatever the file holds,
an importer returns records or raises one PreflineError (no other exception, no traceback),
its message is encodable, and after importing every accepted file the store stays usable
(snapshot, audit JSON + HTML, export).

Files are generated in every container (JSONL, JSON, CSV, Parquet) and record shape
(pairs, chat messages, HH transcripts, thumbs, Likert, rankings, UltraFeedback), with
hostile text (lone surrogates, which become invalid UTF-8 on disk, NUL, BOMs, combining
marks), wrong types and boundary numbers. Bounded and derandomized: CI sees the same files.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.store.hardening_invariant import assert_store_usable

from prefline.base.errors import PreflineError
from prefline.formats.jsonl import write_jsonl
from prefline.formats.load import ALL_FORMATS, load_examples, load_pairs, load_records
from prefline.store.ingest import import_file

HOSTILE = ["\ud800", "\udfff", "\x00", "\ufeff", "e\u0301", "\u2028", "", " ", "x" * 300,
           "\n\nHuman: hi\n\nAssistant: yo", "true", "1", "up", "NaN", "-1"]
BENIGN = st.text("abcdé xyz", min_size=1, max_size=6)
# Mostly plausible text, so that files are often accepted and reach the store too.
TEXT = st.one_of(BENIGN, BENIGN, BENIGN, st.sampled_from(HOSTILE),
                 st.text(st.characters(exclude_categories=()), max_size=10))
VALUE = st.one_of(TEXT, st.integers(-(2**64), 2**64), st.floats(allow_nan=True),
                  st.booleans(), st.none(), st.lists(TEXT, max_size=3))
MESSAGES = st.lists(st.fixed_dictionaries({
    "role": st.sampled_from(["user", "assistant", "system", "bogus"]), "content": TEXT}),
    min_size=0, max_size=3)


def _shape(draw: Any) -> dict[str, Any]:
    """One record in one of the documented shapes, with hostile values."""
    prompt = draw(st.one_of(TEXT, MESSAGES))
    shape = draw(st.sampled_from(["clean", "clean", "pair", "thumbs", "likert", "ranking",
                                  "ultra", "hh", "rating", "junk"]))
    if shape == "clean":  # a valid pair, so that whole files are often accepted
        chosen = draw(BENIGN)
        rec = {"prompt": draw(BENIGN), "chosen": chosen, "rejected": chosen + draw(BENIGN)}
    elif shape == "pair":
        rec = {"prompt": prompt, "chosen": draw(TEXT), "rejected": draw(TEXT)}
    elif shape == "thumbs":
        rec = {"prompt": prompt, "response": draw(TEXT),
               "label": draw(st.one_of(st.booleans(), st.sampled_from([0, 1, "up", "down"]),
                                       VALUE))}
    elif shape == "likert":
        rec = {"prompt": prompt, "response": draw(TEXT), "rating": draw(VALUE)}
    elif shape == "ranking":
        rec = {"prompt": prompt, "responses": draw(st.lists(TEXT, max_size=3)),
               "ranking": draw(st.lists(st.integers(-1, 3), max_size=3))}
    elif shape == "ultra":
        rec = {"instruction": draw(TEXT), "completions": draw(st.lists(st.fixed_dictionaries(
            {"response": TEXT, "overall_score": VALUE}), max_size=3))}
    elif shape == "hh":
        rec = {"chosen": f"\n\nHuman: {draw(TEXT)}\n\nAssistant: {draw(TEXT)}",
               "rejected": f"\n\nHuman: {draw(TEXT)}\n\nAssistant: {draw(TEXT)}"}
    elif shape == "rating":
        rec = {"prompt": prompt, "response": draw(TEXT),
               "scores": draw(st.dictionaries(TEXT, VALUE, max_size=2))}
    else:
        rec = draw(st.dictionaries(TEXT, VALUE, max_size=3))
    if draw(st.integers(0, 4)) == 0:
        rec[draw(st.sampled_from(["annotator", "annotator_kind", "tags", "strength", "tie"]))] = \
            draw(VALUE)
    return rec


def _jsonl(rows: list[dict[str, Any]], bom: bool) -> bytes:
    # surrogatepass: a lone surrogate reaches the disk as the invalid UTF-8 an editor or a
    # broken exporter would write.
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass")


def _csv(rows: list[dict[str, Any]], bom: bool) -> bytes:
    out = io.StringIO()
    fields = sorted({k for r in rows for k in r}, key=str)
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: v if isinstance(v, str) else json.dumps(v) for k, v in r.items()})
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8", "surrogatepass")


@st.composite
def _files(draw: Any) -> tuple[str, Any, str]:
    """(suffix, content: bytes, or rows for Parquet, format to ask for)."""
    rows = [_shape(draw) for _ in range(draw(st.integers(0, 3)))]
    container = draw(st.sampled_from(["jsonl", "json", "csv", "parquet"]))
    # Any format may be asked of any file (a mismatch must be one sentence too); hf wants a
    # dataset folder, not a file.
    fmt = draw(st.sampled_from([f for f in ALL_FORMATS if f != "hf"]))
    bom = draw(st.booleans())
    if container == "jsonl":
        data: Any = _jsonl(rows, bom)
        if draw(st.integers(0, 5)) == 0:
            data += draw(st.binary(max_size=12))  # a torn last line
    elif container == "json":
        data = (b"\xef\xbb\xbf" if bom else b"") + json.dumps(rows, ensure_ascii=False).encode(
            "utf-8", "surrogatepass")
    elif container == "csv":
        data = _csv(rows, bom)
    else:
        data = rows
    return container, data, fmt


def _write(path: Path, data: Any) -> bool:
    """Write the file; False when Parquet cannot hold these rows (mixed column types)."""
    if isinstance(data, bytes):
        path.write_bytes(data)
        return True
    try:
        flat = [{k: json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v
                 for k, v in r.items()} for r in data]
        pq.write_table(pa.Table.from_pylist(flat), path)
    except (pa.ArrowException, UnicodeEncodeError, ValueError):
        return False
    return True


def test_every_importer_returns_records_or_one_sentence(tmp_path: Path) -> None:
    accepted: list[Path] = []
    outcomes = {"records": 0, "refused": 0}

    @settings(max_examples=120, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(spec=_files())
    def fuzz(spec: tuple[str, Any, str]) -> None:
        suffix, data, fmt = spec
        path = tmp_path / f"f{len(accepted)}.{suffix}"
        if not _write(path, data):
            return
        for load in (load_records, load_examples, load_pairs):
            try:
                got = load(path, fmt)
            except PreflineError as exc:
                str(exc).encode("utf-8")  # the sentence itself must be printable
                assert "Traceback" not in str(exc)
                outcomes["refused"] += 1
                continue
            outcomes["records"] += 1
            if load is load_records and got and len(accepted) < 8:
                accepted.append(path)

    fuzz()
    assert outcomes["records"] and outcomes["refused"] and accepted, outcomes
    url = f"sqlite:///{tmp_path / 'store.db'}"
    import_file(write_jsonl(tmp_path / "base.jsonl", [
        {"prompt": "q", "chosen": "a", "rejected": "b"}]), url)
    for path in accepted:
        try:
            import_file(path, url)
        except PreflineError as exc:  # e.g. a record the store refuses: one sentence too
            str(exc).encode("utf-8")
    assert_store_usable(url, tmp_path / "out")
