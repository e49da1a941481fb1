"""The schema comes from migrations: from empty to head, and from the previous revision
with data in it, the database matches the ORM models."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from prefline.store.db import _alembic_config, current_revision, get_engine, upgrade
from prefline.store.models import Base


def assert_matches_models(engine: Engine) -> None:
    insp = inspect(engine)
    for table in Base.metadata.sorted_tables:
        assert insp.has_table(table.name), table.name
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name
    with engine.connect() as conn:  # columns, types, indexes, foreign keys, constraints
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == []


def test_migrate_empty_database_matches_models(db_url: str) -> None:
    engine = upgrade(db_url)
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    assert current_revision(engine) == head
    assert_matches_models(engine)


OLD_ARTIFACTS = sa.table(
    "artifacts", sa.column("id"), sa.column("kind"), sa.column("path"), sa.column("status"),
    sa.column("snapshot_id"), sa.column("parent_id"), sa.column("snapshot_hash"),
    sa.column("created_at"))
SNAPSHOTS = sa.table("snapshots", sa.column("id"), sa.column("content_hash"),
                     sa.column("recipe", sa.JSON), sa.column("stats", sa.JSON),
                     sa.column("created_at"))


def _seed_0002(engine: Engine) -> None:
    """A 0002 store: a reward model trained on snapshot 1, a policy whose parent is it, and
    an artifact with no links."""
    now = dt.datetime(2024, 1, 1)
    with engine.begin() as conn:
        conn.execute(SNAPSHOTS.insert(), [{"content_hash": "ab" * 32, "recipe": {},
                                           "stats": {}, "created_at": now}])
        conn.execute(OLD_ARTIFACTS.insert(), [
            {"kind": "reward_model", "path": "/rm", "status": "registered",
             "snapshot_id": 1, "parent_id": None, "snapshot_hash": "ab" * 32, "created_at": now},
            {"kind": "policy", "path": "/pol", "status": "registered",
             "snapshot_id": 1, "parent_id": 1, "snapshot_hash": "ab" * 32, "created_at": now},
            {"kind": "report", "path": "/r", "status": "registered",
             "snapshot_id": None, "parent_id": None, "snapshot_hash": None, "created_at": now},
        ])


def test_0002_with_data_to_head_keeps_lineage_as_inputs(db_url: str) -> None:
    from alembic import command

    from prefline.registry import Ref, inputs_of, lineage_tree, record
    from prefline.store.db import _alembic_config

    engine = upgrade(db_url, "0002")
    _seed_0002(engine)
    upgrade(db_url)
    assert_matches_models(engine)
    assert inputs_of(1, db_url) == (Ref("snapshot", snapshot_id=1),)
    assert inputs_of(2, db_url) == (Ref("snapshot", snapshot_id=1), Ref("parent", artifact_id=1))
    assert inputs_of(3, db_url) == ()
    tree = lineage_tree(2, db_url)
    assert tree["snapshot_hash"] == "ab" * 32
    assert tree["inputs"][1]["artifact"]["kind"] == "reward_model"
    # the migrated store takes new records, and ids continue after the old ones (sequences too)
    new = record(db_url, "policy", "/p2", config=None, metrics=None,
                 inputs=[Ref("previous_policy", artifact_id=2)])
    assert new == 4

    command.downgrade(_alembic_config(engine), "0002")  # lossy, but the old links come back
    with engine.connect() as conn:
        rows = conn.execute(sa.select(OLD_ARTIFACTS.c.id, OLD_ARTIFACTS.c.snapshot_id,
                                      OLD_ARTIFACTS.c.parent_id).order_by("id")).all()
    assert [tuple(r) for r in rows] == [(1, 1, None), (2, 1, 1), (3, None, None), (4, None, 2)]
    assert not inspect(engine).has_table("artifact_inputs")


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
