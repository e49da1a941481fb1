"""Migration 0004 (issue 16): API idempotency keys scoped by the key's id, snapshot names as
aliases, supersession and skip columns; from 0003 with data to head and back, both backends."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import command
from sqlalchemy import inspect

from prefline.store.db import _alembic_config, upgrade

NOW = dt.datetime(2024, 1, 1)
T = {name: sa.table(name, *(sa.column(c) for c in cols)) for name, cols in {
    "api_keys": ("name", "prefix", "key_hash", "rate_per_s", "burst", "revoked", "created_at"),
    "annotators": ("name", "kind", "created_at"),
    "prompts": ("content_hash", "tags", "created_at"),
    "responses": ("content_hash", "prompt_id", "text", "created_at"),
    "feedback": ("kind", "annotator_id", "prompt_id", "response_id", "payload",
                 "idempotency_key", "source", "created_at"),
    "snapshots": ("name", "content_hash", "recipe", "stats", "created_at"),
}.items()}


def _seed_0003(engine: sa.Engine) -> None:
    """Two API keys whose joined idempotency keys look alike ('a/b' + 'c', 'a' + 'b/c'), an
    import row, and the name 'v1' used twice."""
    with engine.begin() as conn:
        conn.execute(T["api_keys"].insert(), [
            {"name": n, "prefix": f"pk_{i}", "key_hash": "h", "rate_per_s": 1.0, "burst": 1,
             "revoked": False, "created_at": NOW} for i, n in enumerate(["a/b", "a"])])
        conn.execute(T["annotators"].insert(), [{"name": "x", "kind": "human", "created_at": NOW}])
        conn.execute(T["prompts"].insert(), [{"content_hash": "p", "tags": "[]", "created_at": NOW}])
        conn.execute(T["responses"].insert(), [{"content_hash": "r", "prompt_id": 1, "text": "t",
                                                "created_at": NOW}])
        base = {"kind": "binary", "annotator_id": 1, "prompt_id": 1, "response_id": 1,
                "payload": '{"value": true}', "created_at": NOW}
        conn.execute(T["feedback"].insert(), [
            {**base, "idempotency_key": "a/b/c", "source": "api:a/b"},
            {**base, "idempotency_key": "import:abc", "source": "f.jsonl"},
            {**base, "idempotency_key": None, "source": "api:a"},
        ])
        conn.execute(T["snapshots"].insert(), [
            {"name": "v1", "content_hash": h * 64, "recipe": "{}", "stats": "{}",
             "created_at": NOW} for h in "ab"])


def test_0003_with_data_to_0004_and_back(db_url: str) -> None:
    engine = upgrade(db_url, "0003")
    _seed_0003(engine)
    upgrade(db_url, "0004")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, api_key_id, api_idempotency_key, idempotency_key "
                                    "FROM feedback ORDER BY id")).all()
        names = conn.execute(sa.text("SELECT name, snapshot_id FROM snapshot_names")).all()
        cols = {c["name"] for c in inspect(conn).get_columns("assignments")}
    assert [tuple(r) for r in rows] == [(1, 1, "c", None), (2, None, None, "import:abc"),
                                        (3, 2, None, None)]
    assert [tuple(r) for r in names] == [("v1", 2)]  # the newest kept the name, as lookups did
    assert "skip_reason" in cols
    # the once-colliding key: key 'a' may now use client key 'b/c' too
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO feedback (kind, annotator_id, prompt_id, response_id, payload, "
            "api_key_id, api_idempotency_key, source, created_at) VALUES ('binary', 1, 1, 1, "
            "'{}', 2, 'b/c', 'api:a', CURRENT_TIMESTAMP)"))
    command.downgrade(_alembic_config(engine), "0003")
    with engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT idempotency_key FROM feedback ORDER BY id")).scalars()
        # lossy: the joined form collides again, so the later row loses its key
        assert list(keys) == ["a/b/c", "import:abc", None, None]
    assert not inspect(engine).has_table("snapshot_names")
    assert "supersedes_id" not in {c["name"] for c in inspect(engine).get_columns("feedback")}
