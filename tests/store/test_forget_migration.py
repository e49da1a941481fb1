"""Migration 0007 (forgotten-data flags, redactable audit log): up from 0006 with data, down
and up again, on both backends; the audit log still refuses DELETE and any UPDATE that is
not a redaction."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from prefline.store.db import _alembic_config, current_revision, upgrade


def _columns(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def _refused(engine: Engine, sql: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(sql))


def _seed(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO snapshots (content_hash, recipe, stats, created_at) "
                          "VALUES ('ab', '{}', '{}', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO artifacts (kind, path, status, created_at) "
                          "VALUES ('reward_model', '/rm', 'registered', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO audit_log (actor, action, target, created_at) "
                          "VALUES ('cli', 'user.create', 'user:alice', CURRENT_TIMESTAMP)"))


def test_0007_up_down_up(db_url: str) -> None:
    engine = upgrade(db_url, "0006")
    _seed(engine)
    upgrade(db_url, "0007")
    assert current_revision(engine) == "0007"
    with engine.connect() as conn:  # existing rows are not flagged
        for table in ("snapshots", "artifacts"):
            assert conn.execute(text(f"SELECT contains_forgotten_data FROM {table}")).scalar() \
                in (False, 0)
    _refused(engine, "DELETE FROM audit_log")
    _refused(engine, "UPDATE audit_log SET target = 'user:bob'")  # not a redaction
    _refused(engine, "UPDATE audit_log SET action = 'x', redacted_at = CURRENT_TIMESTAMP")
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET target = '[forgotten]', "
                          "redacted_at = CURRENT_TIMESTAMP"))
        assert conn.execute(text("SELECT target FROM audit_log")).scalar() == "[forgotten]"
    command.downgrade(_alembic_config(engine), "0006")
    assert "redacted_at" not in _columns(engine, "audit_log")
    assert "contains_forgotten_data" not in _columns(engine, "artifacts")
    _refused(engine, "UPDATE audit_log SET target = 'x'")
    _refused(engine, "DELETE FROM audit_log")
    upgrade(db_url, "0007")
    assert "contains_forgotten_data" in _columns(engine, "snapshots")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar() == 1
