"""Import into the store: all or nothing, idempotent, annotators and sources recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from prefline.base.errors import PreflineError
from prefline.formats.jsonl import write_jsonl
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
    """A record repeated in one file is one vote (issue 16), listed as a duplicate."""
    row = {"prompt": "q", "chosen": "a", "rejected": "b"}
    path = write_jsonl(tmp_path / "d.jsonl", [row, row])
    summary = import_file(path, sqlite_url)
    assert (summary.feedback_added, summary.duplicates) == (1, [(2, 1)])
    write_jsonl(path, [row, row, row, {"prompt": "q", "chosen": "b", "rejected": "c"}])
    summary = import_file(path, sqlite_url)
    assert (summary.feedback_added, summary.feedback_existing) == (1, 1)
    assert summary.duplicates == [(2, 1), (3, 1)]


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


def test_failure_while_writing_rolls_back_everything(sqlite_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The store refusing the feedback rows, after prompts and responses went in, must not
    leave those earlier inserts behind, nor a rejects file."""
    import sqlite3

    from prefline.store import ingest

    open_store(sqlite_url)
    before = table_counts(sqlite_url)
    real = ingest.insert_ignore

    def refuse_feedback(conn: object, table: str, *args: object) -> int:
        if table == "feedback":
            raise sqlite3.IntegrityError("refused by the test")
        return real(conn, table, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest, "insert_ignore", refuse_feedback)
    path = write_jsonl(tmp_path / "in" / "d.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}, 7])
    with pytest.raises(PreflineError, match="refused the import, nothing was written: refused by the test"):
        import_file(path, sqlite_url, on_bad="skip")
    assert table_counts(sqlite_url) == before
    assert [f.name for f in path.parent.iterdir()] == ["d.jsonl"]  # no rejects file, no temp file


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
    """PostgreSQL refuses a source label longer than its column; the driver's refusal becomes
    a PreflineError and the transaction leaves nothing behind. (NUL characters, which
    PostgreSQL text cannot hold either, no longer reach it: the importer names them.)"""
    open_store(pg_url)
    before = table_counts(pg_url)
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"},
            {"prompt": "q", "chosen": "nul \u0000 here", "rejected": "b"}]
    with pytest.raises(PreflineError, match="line 2, field 'chosen': character 4 is a NUL"):
        import_file(write_jsonl(tmp_path / "nul.jsonl", rows), pg_url)
    with pytest.raises(PreflineError, match="database refused the import, nothing was written"):
        import_file(write_jsonl(tmp_path / "ok.jsonl", rows[:1]), pg_url, source="s" * 300)
    assert table_counts(pg_url) == before


# A shape found in Anthropic's HH-RLHF harmless-base test split (5 of its 2,312 records):
# the two transcripts part at the second human turn, so no one prompt precedes both replies.
OPENING = "\n\nHuman: How do I get into a locked house?\n\nAssistant: Is it your house?"
DIVERGENT = {"chosen": OPENING + "\n\nHuman: Yes, I locked myself out.\n\nAssistant: Call a locksmith.",
             "rejected": OPENING + "\n\nHuman: No, it is my neighbour's.\n\nAssistant: Try a window."}
GOOD_HH = {"chosen": OPENING + "\n\nHuman: Yes.\n\nAssistant: Call a locksmith.",
           "rejected": OPENING + "\n\nHuman: Yes.\n\nAssistant: Break a window."}
MALFORMED = '{"prompt": "q3", "chosen": "a", "rejected": '


def mixed_bad_file(path: Path) -> Path:
    """Lines: 1 good pair, 2 divergent HH pair, 3 malformed JSON, 4 good HH pair, 5 good pair."""
    lines = [json.dumps({"prompt": "q1", "chosen": "a", "rejected": "b"}), json.dumps(DIVERGENT),
             MALFORMED, json.dumps(GOOD_HH), json.dumps({"prompt": "q5", "chosen": "c", "rejected": "d"})]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_on_bad_fail_stores_nothing_and_skip_stores_the_rest(db_url: str, tmp_path: Path) -> None:
    path = mixed_bad_file(tmp_path / "data.jsonl")
    open_store(db_url)
    before = table_counts(db_url)
    with pytest.raises(PreflineError, match=r"data\.jsonl, line 2, field 'rejected': chosen and rejected "
                       r"conversations differ before the final assistant turn \(turn 3\)"):
        import_file(path, db_url)
    assert table_counts(db_url) == before
    rejects = tmp_path / "data.jsonl.rejects.jsonl"
    assert not rejects.exists()

    summary = import_file(path, db_url, on_bad="skip")
    assert (summary.records, summary.rejected, summary.feedback_added) == (3, 2, 3)
    assert summary.rejects_path == str(rejects)
    rows = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert rows == [
        {"line": 2, "reason": "field 'rejected': chosen and rejected conversations differ before "
                              "the final assistant turn (turn 3)", "record": DIVERGENT},
        {"line": 3, "reason": "malformed JSON (Expecting value at column 45)", "record": MALFORMED},
    ]
    with open_store(db_url).connect() as conn:
        stored = conn.execute(select(Response.text)).scalars().all()
        audit = conn.execute(select(AuditLog.details)).scalar_one()
    assert sorted(stored) == ["Break a window.", "Call a locksmith.", "a", "b", "c", "d"]
    assert audit["rejected"] == 2

    after = table_counts(db_url)
    again = import_file(path, db_url, on_bad="skip")
    assert (again.feedback_added, again.feedback_existing, again.rejected) == (0, 3, 2)
    assert table_counts(db_url) == after | {"audit_log": after["audit_log"] + 1}
    assert [json.loads(line) for line in rejects.read_text().splitlines()] == rows


def test_skip_with_no_valid_record_fails_and_writes_nothing(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "in" / "all-bad.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(DIVERGENT) + "\n" + MALFORMED + "\n")
    open_store(db_url)
    before = table_counts(db_url)
    with pytest.raises(PreflineError, match=r"all-bad\.jsonl: none of its records is valid \(2 rejected; "
                       r"the first, line 1: field 'rejected': chosen and rejected conversations"):
        import_file(path, db_url, on_bad="skip")
    assert table_counts(db_url) == before
    assert [f.name for f in path.parent.iterdir()] == ["all-bad.jsonl"]


def test_rejects_file_option_is_checked_before_the_store_is_touched(sqlite_url: str, tmp_path: Path) -> None:
    path = mixed_bad_file(tmp_path / "data.jsonl")
    open_store(sqlite_url)
    before = table_counts(sqlite_url)
    with pytest.raises(PreflineError, match="field 'on_bad': unknown policy 'ignore'"):
        import_file(path, sqlite_url, on_bad="ignore")
    with pytest.raises(PreflineError, match="field 'rejects': a rejects file is only written when bad "
                                            "records are skipped"):
        import_file(path, sqlite_url, rejects=tmp_path / "r.jsonl")
    with pytest.raises(PreflineError, match="field 'rejects': the rejects file would overwrite the input"):
        import_file(path, sqlite_url, on_bad="skip", rejects=path)
    (tmp_path / "blocked").write_text("a file, not a folder")
    with pytest.raises(PreflineError, match="field 'rejects': cannot write the rejects file"):
        import_file(path, sqlite_url, on_bad="skip", rejects=tmp_path / "blocked" / "r.jsonl")
    assert table_counts(sqlite_url) == before
    chosen = tmp_path / "out" / "rejected.jsonl"
    assert import_file(path, sqlite_url, on_bad="skip", rejects=chosen).rejects_path == str(chosen)
    assert len(chosen.read_text().splitlines()) == 2
    assert not (tmp_path / "data.jsonl.rejects.jsonl").exists()


def test_unknown_annotator_kind_is_a_bad_record(sqlite_url: str, tmp_path: Path) -> None:
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"},
            {"prompt": "q", "chosen": "a", "rejected": "c", "annotator_kind": "robot"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(PreflineError, match="line 2, field 'annotator_kind': unknown annotator kind 'robot'"):
        import_file(path, sqlite_url)
    summary = import_file(path, sqlite_url, on_bad="skip")
    assert (summary.feedback_added, summary.rejected) == (1, 1)
    (row,) = [json.loads(line) for line in Path(summary.rejects_path or "").read_text().splitlines()]
    assert (row["line"], row["record"]) == (2, rows[1])
    with pytest.raises(PreflineError, match="field 'annotator_kind': unknown annotator kind 'robot'"):
        import_file(path, sqlite_url, annotator_kind="robot")
