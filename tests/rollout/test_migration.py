"""Migration 0005: up from 0004, down again and up, on both backends."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from prefline.store.db import _alembic_config, current_revision, upgrade

TABLES = {"rollout_flags", "served_responses"}


def test_0005_up_down_up(db_url: str) -> None:
    engine = upgrade(db_url, "0004")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(db_url, "0005")
    assert current_revision(engine) == "0005"
    assert set(inspect(engine).get_table_names()) >= TABLES
    command.downgrade(_alembic_config(engine), "0004")
    assert current_revision(engine) == "0004"
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(db_url, "0005")
    assert set(inspect(engine).get_table_names()) >= TABLES
