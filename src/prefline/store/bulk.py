"""Bulk ``INSERT ... ON CONFLICT DO NOTHING`` and key → id lookups, fast on both backends.

SQLAlchemy's per-row parameter processing costs more than the database itself at 10⁵ rows,
so rows arrive here as plain tuples with JSON already serialised and go straight to the
driver inside the caller's transaction: ``executemany`` on SQLite, ``COPY`` into a temp
table then one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Connection

from prefline.base.errors import PreflineError

_SQLITE_CHUNK = 5000  # keys per IN (...) lookup; below SQLite's bound-parameter limit
INDEX_AFTER_ROWS = 1000
"""Fewest rows for which an empty SQLite table's plain indexes are built after the insert:
below it the schema change (every other connection re-prepares) buys nothing."""


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # one encoder, not one per value


def dumps(value: Any) -> str | None:
    """JSON text for a JSON column (None stays SQL NULL)."""
    return None if value is None else _ENCODE(value)


def timestamp(conn: Connection, when: dt.datetime) -> Any:
    """``when`` as the driver expects it: SQLAlchemy's text format on SQLite."""
    if conn.dialect.name == "sqlite":
        return when.strftime("%Y-%m-%d %H:%M:%S.%f")
    return when


@contextmanager
def bulk_session(conn: Connection) -> Iterator[None]:
    """Give SQLite a large page cache while bulk-loading: with the default 2 MB, inserting
    10⁵ random content hashes into unique indexes spends most of its time re-reading pages."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw: Any = conn.connection.driver_connection
    before = raw.execute("PRAGMA cache_size").fetchone()[0]
    raw.execute("PRAGMA cache_size=-262144")  # KiB, so at most 256 MiB, allocated as used
    try:
        yield
    finally:
        raw.execute(f"PRAGMA cache_size={int(before)}")


def driver_errors() -> tuple[type[BaseException], ...]:
    """The DB-API error classes of the drivers this module talks to directly."""
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    errors: list[type[BaseException]] = [sqlite3.Error, DBAPIError]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # SQLite-only installs have no psycopg
        pass
    return tuple(errors)


def _check(conn: Connection) -> str:
    name = conn.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise PreflineError(f"unsupported database dialect {name}: use SQLite or PostgreSQL")
    return name


def insert_ignore(conn: Connection, table: str, columns: Sequence[str],
                  rows: Sequence[tuple[Any, ...]], key: str) -> int:
    """Insert ``rows`` (tuples in ``columns`` order), skipping ones whose ``key`` exists;
    return how many were inserted."""
    if not rows:
        return 0
    if _check(conn) == "postgresql":
        return _pg_copy_insert(conn, table, columns, rows, key, want_ids=False)[0]
    raw: Any = conn.connection.driver_connection
    marks = ", ".join("?" * len(columns))
    before = raw.total_changes
    with _plain_indexes_after(raw, table, len(rows)):
        raw.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
                        f"ON CONFLICT ({key}) DO NOTHING", rows)
    return int(raw.total_changes - before)


@contextmanager
def _plain_indexes_after(raw: Any, table: str, n_rows: int) -> Iterator[None]:
    """Fill an empty SQLite table first and build its plain indexes after.

    Every row inserted costs one B-tree insert per index (ten plain ones on ``feedback``);
    an index built over the filled table is one sorted pass. Only non-unique indexes, which
    enforce nothing, are dropped, and they are created again from their own stored SQL (same
    name, same definition) in the caller's open transaction: SQLite's DDL is transactional,
    so a failed import rolls them back with the rows, and other connections never see the
    table without them (readers keep their WAL snapshot; writers wait for the lock). Skipped
    below :data:`INDEX_AFTER_ROWS` rows, outside a transaction (the driver would commit the
    DDL at once), on a table that holds rows (rebuilding would cost more than it saves) and
    where ANALYZE statistics exist (dropping an index drops its statistics)."""
    if n_rows < INDEX_AFTER_ROWS:
        yield
        return
    plain = raw.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                        "tbl_name = ? AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE%'",
                        (table,)).fetchall()
    if not plain or not raw.in_transaction \
            or raw.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() \
            or raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
        yield
        return
    for name, _ in plain:
        raw.execute(f'DROP INDEX "{name}"')
    yield
    for _, sql in plain:
        raw.execute(sql)


def _pg_copy_insert(conn: Connection, table: str, columns: Sequence[str],
                    rows: Sequence[tuple[Any, ...]], key: str,
                    want_ids: bool) -> tuple[int, dict[str, int]]:
    """COPY into a temp table and insert what is new. With ``want_ids`` the new rows' ids
    come back from RETURNING and any already-stored ones through a join with the temp
    table (faster than ``key = ANY(array)`` at 10⁵ keys)."""
    cols = ", ".join(columns)
    tmp = f"_bulk_{table}"
    ids: dict[str, int] = {}
    with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(f"CREATE TEMP TABLE {tmp} ON COMMIT DROP AS SELECT {cols} FROM {table} WITH NO DATA")
        with cur.copy(f"COPY {tmp} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        returning = f" RETURNING {key}, id" if want_ids else ""
        cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {tmp} "
                    f"ON CONFLICT ({key}) DO NOTHING{returning}")
        inserted = int(cur.rowcount)
        if want_ids:
            ids.update(cur.fetchall())
            if inserted < len(rows):  # some were stored already: read their ids too
                cur.execute(f"SELECT t.{key}, t.id FROM {table} t JOIN {tmp} n ON n.{key} = t.{key}")
                ids.update(cur.fetchall())
        cur.execute(f"DROP TABLE {tmp}")
    return inserted, ids


def lookup_ids(conn: Connection, table: str, key: str, values: Iterable[str]) -> dict[str, int]:
    """``{key value: id}`` for those of ``values`` already stored in ``table``."""
    values = list(values)
    if not values:
        return {}
    raw: Any = conn.connection.driver_connection
    found: dict[str, int] = {}
    if _check(conn) == "postgresql":
        with raw.cursor() as cur:
            cur.execute(f"SELECT {key}, id FROM {table} WHERE {key} = ANY(%s)", (values,))
            found.update(cur.fetchall())
        return found
    for i in range(0, len(values), _SQLITE_CHUNK):
        chunk = values[i:i + _SQLITE_CHUNK]
        marks = ", ".join("?" * len(chunk))
        cur = raw.execute(f"SELECT {key}, id FROM {table} WHERE {key} IN ({marks})", chunk)
        found.update(cur.fetchall())
    return found


def _sqlite_new_ids(raw: Any, table: str, key: str, keys: list[str], before: int) -> dict[str, int] | None:
    """Ids of ``keys`` just inserted, all of them, into an SQLite table whose largest id was
    ``before``: SQLite gives each new row the largest rowid + 1, so they are consecutive in
    insertion order. Checked on the first and last key; None when that does not hold."""
    first, last = before + 1, before + len(keys)
    got = dict(raw.execute(f"SELECT {key}, id FROM {table} WHERE {key} IN (?, ?)",
                           (keys[0], keys[-1])).fetchall())
    if got.get(keys[0]) != first or got.get(keys[-1]) != last:
        return None
    return {k: first + i for i, k in enumerate(keys)}


def upsert_ids(conn: Connection, table: str, columns: Sequence[str],
               rows: dict[str, tuple[Any, ...]], key: str) -> tuple[dict[str, int], int]:
    """Insert the rows (``{key value: row}``) not yet stored; return every id and the new count.

    The common case of a first import (nothing already stored) on SQLite skips the id
    lookup, which otherwise costs about a tenth of the import; PostgreSQL reads ids back
    from the COPY's temp table."""
    if not rows:
        return {}, 0
    if _check(conn) == "postgresql":
        added, ids = _pg_copy_insert(conn, table, columns, list(rows.values()), key, want_ids=True)
        return ids, added
    raw: Any = conn.connection.driver_connection
    before = raw.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]
    added = insert_ignore(conn, table, columns, list(rows.values()), key)
    if added == len(rows):
        new_ids = _sqlite_new_ids(raw, table, key, list(rows), int(before))
        if new_ids is not None:
            return new_ids, added
    return lookup_ids(conn, table, key, rows), added


def table_counts(conn: Connection) -> dict[str, int]:
    """Rows per store table: a cheap fingerprint to check that a failed write left no trace."""
    from sqlalchemy import func, select

    from prefline.store.models import Base

    return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in Base.metadata.sorted_tables}
