"""Throw-away PostgreSQL databases: one per test (tests/conftest.py) or benchmark run.

Tests and benchmarks need a *fresh* database on a shared server so no run sees another's
rows; creating one is cheaper than starting a server, and dropping it ``WITH (FORCE)`` works
even when a crashed run left connections open.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

from prefline.store.db import check_reachable, get_engine, normalise_url


@contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """The URL of a new empty database on ``server_url``'s server, dropped afterwards."""
    server_url = normalise_url(server_url)
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    check_reachable(admin)
    name = f"prefline_tmp_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server_url.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
