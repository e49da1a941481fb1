"""Import into the store: all or nothing, idempotent, annotators and sources recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from prefline.base.errors import PreflineError
from prefline.formats.export import write_jsonl
from prefline.store import bulk
from prefline.store.db import open_store
from prefline.store.ingest import import_file
from prefline.store.models import Annotator, AuditLog, Feedback, Prompt, Response


def table_counts(url: str) -> dict[str, int]:
    with open_store(url).connect() as conn:
        return bulk.table_counts(conn)


MIXED = [
    {"prompt": "q1", "chosen": "a", "rejected": "b", "tags": ["math"]},
    {"prompt": "q1", "chosen": "a", "rejected": "c"},
    {"prompt": "q2", "completion": "yes", "label": True, "annotator": "ann", "annotator_kind": "ai_judge"},
    {"prompt": "q3", "responses": ["x", "y", "z"], "order": [1, 0, 2]},
    {"prompt": "q4", "response": "r", "scores": {"helpful": 3}},
]


def test_import_stores_every_kind_once_and_reimport_adds_nothing(db_url: str, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mixed.jsonl", MIXED)
    first = import_file(path, db_url)
    assert (first.records, first.feedback_added, first.prompts_added) == (5, 5, 4)
    assert first.responses_added == 3 + 1 + 3 + 1  # q1's "a" is shared by two pairs
    assert first.by_kind == {"pairwise": 2, "binary": 1, "ranking": 1, "rating": 1}
    before = table_counts(db_url)
    again = import_file(path, db_url)
    assert (again.feedback_added, again.feedback_existing, again.prompts_added) == (0, 5, 0)
    after = table_counts(db_url)
    assert after == before | {"audit_log": before["audit_log"] + 1}
    engine = open_store(db_url)
    with engine.connect() as conn:
        kinds = dict(conn.execute(select(Annotator.name, Annotator.kind)).all())
        assert kinds == {"import:mixed.jsonl": "human", "ann": "ai_judge"}
        assert set(conn.execute(select(Feedback.source)).scalars()) == {"mixed.jsonl"}
        order = conn.execute(select(Feedback.payload).where(Feedback.kind == "ranking")).scalar_one()
        texts = dict(conn.execute(select(Response.id, Response.text)).all())
        assert [texts[i] for i in order["order"]] == ["y", "x", "z"]
        assert conn.execute(select(Prompt.tags).where(Prompt.text == "q1")).scalar_one() == ["math"]
        assert conn.execute(select(AuditLog.action)).scalars().all() == ["import", "import"]


def test_appended_lines_and_repeated_records_are_counted(sqlite_url: str, tmp_path: Path) -> None:
    row = {"prompt": "q", "chosen": "a", "rejected": "b"}
    path = write_jsonl(tmp_path / "d.jsonl", [row, row])
    assert import_file(path, sqlite_url).feedback_added == 2  # two identical judgments, both kept
    write_jsonl(path, [row, row, row, {"prompt": "q", "chosen": "b", "rejected": "c"}])
    summary = import_file(path, sqlite_url)
    assert (summary.feedback_added, summary.feedback_existing) == (2, 2)


def test_malformed_line_among_valid_ones_leaves_store_unchanged(db_url: str, tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", MIXED)
    import_file(good, db_url)
    before = table_counts(db_url)
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps({"prompt": f"p{i}", "chosen": "a", "rejected": "b"}) for i in range(6)]
    lines[3] = '{"prompt": "p3", "chosen": "a", "rejected": '
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(PreflineError, match=r"bad\.jsonl, line 4: malformed JSON"):
        import_file(bad, db_url)
    assert table_counts(db_url) == before


def test_failure_while_writing_rolls_back_everything(sqlite_url: str, tmp_path: Path) -> None:
    """A record that passes validation but fails in the store (unknown annotator kind is
    checked at write time) must not leave the earlier inserts behind."""
    open_store(sqlite_url)
    before = table_counts(sqlite_url)
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"},
            {"prompt": "q", "chosen": "a", "rejected": "c", "annotator_kind": "robot"}]
    with pytest.raises(PreflineError, match="line 2, field 'annotator_kind'"):
        import_file(write_jsonl(tmp_path / "d.jsonl", rows), sqlite_url)
    assert table_counts(sqlite_url) == before


def test_shared_hh_file_imports_every_pair_once(db_url: str, hh_file: Path) -> None:
    first = import_file(hh_file, db_url)
    assert first.feedback_added == 800 and first.prompts_added == 800
    engine = open_store(db_url)
    with engine.connect() as conn:
        msgs = conn.execute(select(Prompt.messages).limit(50)).scalars().all()
    assert all(m[0]["role"] == "user" and "\n\nHuman:" not in m[0]["content"] for m in msgs)
    assert any(len(m) > 1 for m in msgs)  # multi-turn dialogues kept as turns
    assert import_file(hh_file, db_url).feedback_added == 0


def test_identical_hh_transcripts_are_skipped_and_reported(sqlite_url: str, tmp_path: Path) -> None:
    """Public HH releases contain pairs with chosen == rejected: those are skipped (with
    their lines) while plain pairs stay an error unless asked for."""
    same = "\n\nHuman: hi\n\nAssistant: hello"
    hh = write_jsonl(tmp_path / "hh.jsonl", [
        {"chosen": same + "!", "rejected": same + "?"}, {"chosen": same, "rejected": same}])
    summary = import_file(hh, sqlite_url)
    assert (summary.feedback_added, summary.skipped_identical) == (1, [2])
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                                   {"prompt": "q", "chosen": "c", "rejected": "c"}])
    with pytest.raises(PreflineError, match="line 2, field 'chosen': chosen is identical"):
        import_file(plain, sqlite_url)
    assert import_file(plain, sqlite_url, skip_identical=True).skipped_identical == [2]


def test_database_refusal_is_one_sentence_and_writes_nothing(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL text cannot hold NUL characters; the driver's refusal becomes a
    PreflineError and the transaction leaves nothing behind."""
    open_store(pg_url)
    before = table_counts(pg_url)
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"},
            {"prompt": "q", "chosen": "nul \u0000 here", "rejected": "b"}]
    with pytest.raises(PreflineError, match="database refused the import, nothing was written"):
        import_file(write_jsonl(tmp_path / "nul.jsonl", rows), pg_url)
    assert table_counts(pg_url) == before
