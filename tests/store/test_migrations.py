"""The schema comes from migrations: from empty to head matches the ORM models."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from prefline.store.db import current_revision, get_engine, upgrade
from prefline.store.models import Base


def test_migrate_empty_database_matches_models(db_url: str) -> None:
    engine = upgrade(db_url)
    assert current_revision(engine) is not None
    insp = inspect(engine)
    for table in Base.metadata.sorted_tables:
        assert insp.has_table(table.name), table.name
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name


def test_upgrade_is_idempotent_and_downgrade_empties(db_url: str) -> None:
    engine = upgrade(db_url)
    rev = current_revision(engine)
    upgrade(db_url)
    assert current_revision(engine) == rev
    from alembic import command

    from prefline.store.db import _alembic_config

    command.downgrade(_alembic_config(engine), "base")
    assert not inspect(engine).has_table("feedback")
    upgrade(db_url)
    assert inspect(engine).has_table("feedback")


def test_audit_log_is_append_only(db_url: str) -> None:
    engine = upgrade(db_url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO audit_log (actor, action, created_at) VALUES ('t', 'x', CURRENT_TIMESTAMP)"
        ))
    for stmt in ("UPDATE audit_log SET actor = 'y'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(stmt))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_log")).scalars().all() == ["t"]


def test_sqlite_uses_wal_and_foreign_keys(sqlite_url: str) -> None:
    engine = get_engine(sqlite_url)
    upgrade(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
