"""Migration 0006 (user id and segment on feedback, consents): up from 0005 with data in
the store, down again and up, on both backends."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from prefline.store.db import _alembic_config, current_revision, upgrade


def _columns(engine, table: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {c["name"] for c in inspect(engine).get_columns(table)}


def test_0006_up_down_up_keeps_old_feedback(db_url: str) -> None:
    engine = upgrade(db_url, "0005")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO annotators (name, kind, created_at) "
                          "VALUES ('h', 'human', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO prompts (content_hash, tags, created_at) "
                          "VALUES ('ab', '[]', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO feedback (kind, annotator_id, prompt_id, payload, "
                          "created_at) VALUES ('binary', 1, 1, '{}', CURRENT_TIMESTAMP)"))
    upgrade(db_url, "0006")
    assert current_revision(engine) == "0006"
    assert {"user_id", "segment"} <= _columns(engine, "feedback")
    assert "segment_attrs" in _columns(engine, "served_responses")
    assert "consents" in inspect(engine).get_table_names()
    with engine.connect() as conn:  # rows written before 0006 have no user
        assert conn.execute(text("SELECT user_id, segment FROM feedback")).all() == [(None, None)]
    command.downgrade(_alembic_config(engine), "0005")
    assert "user_id" not in _columns(engine, "feedback")
    assert "consents" not in inspect(engine).get_table_names()
    upgrade(db_url, "0006")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM feedback")).scalar() == 1
