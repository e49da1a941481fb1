"""An import stores exactly the same rows and schema as before the import was made faster.

The file holds every record shape and the options that change a row (ties, strength, tags,
message lists, HH transcripts, users and segments, named annotators, Unicode, a repeated
record, a prompt whose pairs are not consecutive), so a change to hashing, row building or
the insert path that alters any stored byte changes the digest. The digest was taken with
the import code of f80801d, before issue 17's session 5 changes; ``created_at`` is left out
(it is the time of the import) and so is the audit log (it names the temporary path).
"""

from __future__ import annotations

import gc
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from prefline.base.errors import PreflineError
from prefline.formats.jsonl import write_jsonl
from prefline.store import bulk
from prefline.store.bulk import insert_ignore
from prefline.store.db import open_store
from prefline.store.ingest import import_file

HH = "\n\nHuman: what is 2+2?\n\nAssistant: "
RECORDS = [
    {"prompt": "q1", "chosen": "a", "rejected": "b", "tags": ["math", "easy"]},
    {"prompt": "q1", "chosen": "a", "rejected": "c", "tags": ["math", "new"]},
    {"prompt": "q2", "chosen": "long answer", "rejected": "short", "tie": True},
    {"prompt": "q2", "chosen": "x", "rejected": "y", "strength": 0.75},
    {"prompt": "q1", "chosen": "d", "rejected": "e"},  # q1 again, not next to its pairs
    {"prompt": "q1", "chosen": "a", "rejected": "b", "tags": ["math", "easy"]},  # repeat
    {"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q5"}],
     "chosen": [{"role": "assistant", "content": "ok"}], "rejected": "no"},
    {"chosen": HH + "4", "rejected": HH + "5"},
    {"prompt": "é ünïcode ✓", "chosen": "日本語", "rejected": "emoji 🙂", "user": "u-1",
     "segment": {"style": "concise"}},
    {"prompt": "q6", "chosen": "p", "rejected": "q", "annotator": "alice",
     "annotator_kind": "ai_judge"},
    {"prompt": "q2", "completion": "yes", "label": True, "user": "u-2"},
    {"prompt": "q2", "completion": "no", "label": False, "tags": "t"},
    {"prompt": "q3", "responses": ["x", "y", "z"], "order": [1, 0, 2]},
    {"prompt": "q4", "response": "r", "scores": {"helpful": 3, "honest": 4.5}},
]
TABLES = {
    "annotators": "id, name, kind, role, config",
    "prompts": "id, content_hash, text, messages, context, tags",
    "responses": "id, content_hash, prompt_id, text, model, model_version, gen_params",
    "feedback": "id, kind, annotator_id, prompt_id, response_a_id, response_b_id, response_id, "
                "choice, payload, rationale, shown_left_id, time_spent_ms, idempotency_key, "
                "source, api_key_id, api_idempotency_key, body_hash, supersedes_id, user_id, "
                "segment",
}
DIGEST = "46cc4fb611c47a4bea44584ceee14514265fcbf2d96ea87138d1644db0e39f9d"


def _rows(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        lines = [f"{table}: {row!r}" for table, cols in TABLES.items()
                 for row in conn.execute(f"SELECT {cols} FROM {table} ORDER BY id")]
    finally:
        conn.close()
    return "\n".join(lines)


def test_import_stores_the_same_rows_byte_for_byte(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "every-shape.jsonl", RECORDS)
    db = tmp_path / "store.db"
    summary = import_file(path, f"sqlite:///{db}")
    assert (summary.records, summary.duplicates) == (len(RECORDS) - 1, [(6, 1)])
    rows = _rows(db)
    assert hashlib.sha256(rows.encode()).hexdigest() == DIGEST, rows


def _indexes(db: Path) -> set[tuple[str, str, str]]:
    conn = sqlite3.connect(db)
    try:
        return set(conn.execute("SELECT tbl_name, name, sql FROM sqlite_master "
                                "WHERE type = 'index' AND sql IS NOT NULL"))
    finally:
        conn.close()


def test_import_into_an_empty_store_keeps_every_index(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A first import builds the plain indexes after the rows: afterwards the schema is the
    migrated one, and a failure after the indexes were dropped rolls the drop back too."""
    monkeypatch.setattr(bulk, "INDEX_AFTER_ROWS", 1)  # these few rows take the bulk path
    db = tmp_path / "store.db"
    engine = open_store(f"sqlite:///{db}")
    migrated = _indexes(db)
    assert {"ix_feedback_kind", "ix_responses_prompt_id"} <= {name for _, name, _ in migrated}
    for in_transaction in (False, True):  # outside one, the driver would commit DDL at once
        with engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            if in_transaction:
                raw.execute("INSERT INTO annotators (name, kind, created_at) VALUES ('a', 'human', 'now')")
            with pytest.raises(sqlite3.IntegrityError):  # no such prompt: its foreign key
                insert_ignore(conn, "responses", ("content_hash", "prompt_id", "text", "created_at"),
                              [("h", 99, "t", "now")], "content_hash")
            conn.rollback()
        assert _indexes(db) == migrated
    import_file(write_jsonl(tmp_path / "every-shape.jsonl", RECORDS), f"sqlite:///{db}")
    assert _indexes(db) == migrated


def test_import_leaves_garbage_collection_as_it_found_it(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "every-shape.jsonl", RECORDS)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "chosen": "a"}])
    url = f"sqlite:///{tmp_path / 'store.db'}"
    import_file(path, url)
    assert gc.isenabled()
    with pytest.raises(PreflineError):
        import_file(bad, url)
    assert gc.isenabled()
    gc.disable()
    try:
        import_file(path, url)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_small_first_import_leaves_the_schema_alone(tmp_path: Path) -> None:
    """Below ``INDEX_AFTER_ROWS`` rows no index is dropped and re-created (a schema change
    makes every other connection re-prepare its statements, for nothing)."""
    db = tmp_path / "store.db"
    open_store(f"sqlite:///{db}")
    conn = sqlite3.connect(db)
    try:
        schema = "SELECT name, rootpage FROM sqlite_master ORDER BY name"
        before, version = conn.execute(schema).fetchall(), conn.execute("PRAGMA schema_version").fetchone()
        import_file(write_jsonl(tmp_path / "every-shape.jsonl", RECORDS), f"sqlite:///{db}")
        assert conn.execute(schema).fetchall() == before
        assert conn.execute("PRAGMA schema_version").fetchone() == version
    finally:
        conn.close()
