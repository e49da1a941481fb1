"""Migration 0002 creates exactly the collection models, and upgrades an 0001 store."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import prefline.store.collect_models  # noqa: F401
from prefline.store.db import current_revision, upgrade
from prefline.store.models import Base


def test_migrated_schema_matches_all_models(db_url: str) -> None:
    engine = upgrade(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_from_0001_and_back(db_url: str) -> None:
    from alembic import command

    from prefline.store.db import _alembic_config

    engine = upgrade(db_url, "0001")
    assert not inspect(engine).has_table("campaigns")
    upgrade(db_url, "0002")  # the collection tables' migration
    assert current_revision(engine) == "0002"
    assert inspect(engine).has_table("assignments")
    command.downgrade(_alembic_config(engine), "0001")
    assert not inspect(engine).has_table("users")
    assert inspect(engine).has_table("feedback")
