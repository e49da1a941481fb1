"""Engines, sessions and migrations for the store (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from prefline.base.errors import PreflineError
from prefline.base.paths import default_db_url
from prefline.store.models import AuditLog, Base, Feedback

MIGRATIONS = Path(__file__).parent / "migrations"


SUPPORTED = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")
"""URL schemes the store runs on (``postgres://`` is read as ``postgresql://``)."""


def normalise_url(url: str | None) -> str:
    """Accept a URL, a bare file path, or None (the default store).

    Raises PreflineError for any other database (MySQL, ...): the migrations and bulk
    inserts are written for SQLite and PostgreSQL only, and their drivers are the ones shipped.
    """
    if not url:
        return default_db_url()
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        # psycopg 3 is the driver we ship; SQLAlchemy's bare scheme means psycopg2.
        return "postgresql+psycopg://" + rest
    if scheme not in SUPPORTED:
        raise PreflineError(f"unsupported database URL scheme '{scheme}://'; expected a SQLite "
                            "path, sqlite:///FILE or postgresql://USER@HOST/DB", field="db")
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


@functools.lru_cache(maxsize=16)
def get_engine(url: str | None = None) -> Engine:
    """One engine per URL per process. SQLite gets WAL and foreign keys on every connection."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            parent = Path(path).parent
            if not parent.exists():
                raise PreflineError(f"cannot open database {path}: folder {parent} does not exist")
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    return engine


def check_reachable(engine: Engine) -> None:
    """Raise a one-sentence PreflineError if the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise PreflineError(f"cannot reach database {engine.url!r}: {reason}") from None


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> Engine:
    """Create or migrate the store to ``revision`` and return its engine."""
    from alembic import command

    engine = get_engine(url)
    check_reachable(engine)
    command.upgrade(_alembic_config(engine), revision)
    return engine


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


@functools.lru_cache(maxsize=16)
def _ready(url: str) -> Engine:
    return upgrade(url)


def open_store(url: str | None = None) -> Engine:
    """The engine for ``url``, migrated to the latest schema (once per process)."""
    return _ready(normalise_url(url))


@contextmanager
def session_scope(url: str | Engine | None = None) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error."""
    engine = url if isinstance(url, Engine) else open_store(url)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def audit(session: Session, actor: str, action: str, target: str | None = None,
          **details: Any) -> None:
    """Append one audit-log entry in the caller's transaction."""
    session.add(AuditLog(actor=actor, action=action, target=target, details=details or None))


def store_stats(url: str | None = None) -> dict[str, dict[str, int]]:
    """What the store holds: rows per table (``tables``), feedback events per kind
    (``feedback_by_kind``) and per source (``feedback_by_source``; ``-`` when none was
    recorded). Tables of the current schema only; empty ones are listed with 0."""
    engine = open_store(url)
    with engine.connect() as conn:
        present = set(inspect(conn).get_table_names())
        tables = {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                  for t in Base.metadata.sorted_tables if t.name in present}
        by = {}
        for name, column in (("feedback_by_kind", Feedback.kind),
                             ("feedback_by_source", Feedback.source)):
            rows = conn.execute(select(column, func.count()).group_by(column).order_by(column))
            by[name] = {str(k) if k is not None else "-": int(n) for k, n in rows}
    return {"tables": dict(sorted(tables.items())), **by}
