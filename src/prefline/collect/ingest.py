"""Writing production prompts, responses and feedback into the store, fast and exactly once.

A batch is one transaction: it is validated against the store first (every referenced
response exists, pairs share a prompt), then inserted with ``ON CONFLICT DO NOTHING`` on
the idempotency key, so a retried request (or two racing copies of it) stores each event
once and reports the row that already exists.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from prefline.collect.schemas import (
    BinaryEvent,
    ImplicitEvent,
    LogRequest,
    PairwiseEvent,
    RankingEvent,
    RatingEvent,
)
from prefline.formats.examples import as_messages, prompt_text
from prefline.formats.records import prompt_key
from prefline.store.ingest import response_hash
from prefline.store.models import Annotator, Feedback, Prompt, Response, utcnow

AnyEvent = PairwiseEvent | RatingEvent | BinaryEvent | ImplicitEvent | RankingEvent


class IngestError(ValueError):
    """A request that is well-formed JSON but refers to something that does not exist."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def _upsert(conn: Connection, table: Any, rows: list[dict[str, Any]], key: str) -> None:
    """Insert rows, skipping those whose unique ``key`` already exists (race-safe)."""
    if not rows:
        return
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    conn.execute(dialect.insert(table).on_conflict_do_nothing(index_elements=[key]), rows)


def log_interaction(engine: Engine, req: LogRequest) -> tuple[int, list[int]]:
    """Store a prompt and its responses (deduplicated by content); returns their ids."""
    messages = as_messages([m.model_dump() for m in req.prompt.messages]
                           if req.prompt.messages else (req.prompt.text or ""))
    p_hash = prompt_key(messages)  # the importer's prompt identity
    now = utcnow()
    with engine.begin() as conn:
        _upsert(conn, Prompt.__table__, [{
            "content_hash": p_hash, "text": prompt_text(messages), "messages": messages,
            "context": req.prompt.context, "tags": list(req.prompt.tags), "created_at": now,
        }], "content_hash")
        prompt_id = conn.scalar(select(Prompt.id).where(Prompt.content_hash == p_hash))
        hashes = [response_hash(p_hash, r.text, r.model, r.model_version) for r in req.responses]
        _upsert(conn, Response.__table__, [{
            "content_hash": h, "prompt_id": prompt_id, "text": r.text, "model": r.model,
            "model_version": r.model_version, "gen_params": r.gen_params, "created_at": now,
        } for h, r in zip(hashes, req.responses, strict=True)], "content_hash")
        found = dict(conn.execute(select(Response.content_hash, Response.id)
                                  .where(Response.content_hash.in_(set(hashes)))).all())
    assert prompt_id is not None
    return int(prompt_id), [int(found[h]) for h in hashes]


@dataclass(frozen=True)
class Job:
    """The events of one request, written under one API key."""

    events: Sequence[AnyEvent]
    key_name: str
    field_prefix: str = ""


class FeedbackWriter:
    """Writes validated events for one server process; caches immutable lookups.

    Responses never change their prompt and annotators are never deleted, so both maps
    are cached (bounded) to keep the hot path at a handful of statements per batch.
    """

    CACHE_MAX = 200_000

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._prompt_of: dict[int, int] = {}
        self._annotators: dict[str, int] = {}
        self._lock = threading.Lock()

    def write(self, events: Sequence[AnyEvent], key_name: str,
              field_prefix: str = "") -> list[tuple[int, str]]:
        """Store events; returns ``(feedback id, "created"|"duplicate")`` per event, in order.

        Raises IngestError naming ``{field_prefix}[i].field`` when a reference is unknown;
        nothing is written then.
        """
        result = self.write_group([Job(events, key_name, field_prefix)])[0]
        if isinstance(result, IngestError):
            raise result
        return result

    def write_group(self, jobs: Sequence[Job]) -> list[list[tuple[int, str]] | IngestError]:
        """Several requests' events in ONE transaction (group commit), result per job.

        A job with an unknown reference gets its IngestError and contributes no rows; the
        others are still written.
        """
        new_annotators: dict[str, int] = {}
        prepared: list[list[dict[str, Any]] | IngestError] = []
        with self.engine.begin() as conn:
            for job in jobs:
                try:
                    prompt_of = self._prompts_for(conn, job.events, job.field_prefix)
                    prepared.append([self._row(conn, ev, job.key_name, prompt_of,
                                               new_annotators) for ev in job.events])
                except IngestError as exc:
                    prepared.append(exc)
            flat = [row for rows in prepared if isinstance(rows, list) for row in rows]
            results = iter(self._insert(conn, flat))
        # Cached only after commit: a rolled-back annotator row must not be remembered.
        with self._lock:
            self._annotators.update(new_annotators)
        return [rows if isinstance(rows, IngestError) else [next(results) for _ in rows]
                for rows in prepared]

    def _prompts_for(self, conn: Connection, events: Sequence[AnyEvent],
                     prefix: str) -> dict[int, int]:
        wanted = {rid for ev in events for rid in _response_ids(ev)}
        with self._lock:
            known = {rid: self._prompt_of[rid] for rid in wanted if rid in self._prompt_of}
        missing = wanted - known.keys()
        if missing:
            fetched = dict(conn.execute(select(Response.id, Response.prompt_id)
                                        .where(Response.id.in_(missing))).all())
            known.update(fetched)
            with self._lock:
                if len(self._prompt_of) > self.CACHE_MAX:
                    self._prompt_of.clear()
                self._prompt_of.update(fetched)
        for i, ev in enumerate(events):
            where = f"{prefix}[{i}]." if prefix else ""
            ids = _response_ids(ev)
            for name, rid in _named_ids(ev):
                if rid not in known:
                    raise IngestError(f"response {rid} does not exist", f"{where}{name}")
            if len({known[r] for r in ids}) > 1:
                raise IngestError("all responses of one event must answer the same prompt",
                                  f"{where}{_named_ids(ev)[-1][0]}")
        return known

    def _annotator(self, conn: Connection, name: str, kind: str, new: dict[str, int]) -> int:
        with self._lock:
            if name in self._annotators:
                return self._annotators[name]
        if name not in new:
            _upsert(conn, Annotator.__table__, [{"name": name, "kind": kind,
                                                 "role": "production", "created_at": utcnow()}],
                    "name")
            new[name] = int(conn.scalar(select(Annotator.id).where(Annotator.name == name)) or 0)
        return new[name]

    def _row(self, conn: Connection, ev: AnyEvent, key_name: str, prompt_of: dict[int, int],
             new: dict[str, int]) -> dict[str, Any]:
        if isinstance(ev, ImplicitEvent):
            annotator = self._annotator(conn, f"api:{key_name}:implicit", "implicit", new)
        else:
            name = f"api:{key_name}:{ev.user}" if ev.user else f"api:{key_name}"
            annotator = self._annotator(conn, name, "human", new)
        ids = _response_ids(ev)
        row: dict[str, Any] = {
            "kind": ev.kind, "annotator_id": annotator, "prompt_id": prompt_of[ids[0]],
            "response_a_id": None, "response_b_id": None, "response_id": None, "choice": None,
            "rationale": ev.rationale, "shown_left_id": None, "time_spent_ms": ev.time_spent_ms,
            "idempotency_key": f"{key_name}/{ev.idempotency_key}" if ev.idempotency_key else None,
            "source": f"api:{key_name}", "created_at": utcnow(),
        }
        row.update(_kind_fields(ev))
        return row

    def _insert(self, conn: Connection, rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
        table: Table = Feedback.__table__  # type: ignore[assignment]
        out: list[tuple[int, str] | None] = [None] * len(rows)
        keyed = [i for i, r in enumerate(rows) if r["idempotency_key"] is not None]
        plain = [i for i, r in enumerate(rows) if r["idempotency_key"] is None]
        if plain:
            ids = conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True),
                               [rows[i] for i in plain]).scalars().all()
            for i, fid in zip(plain, ids, strict=True):
                out[i] = (int(fid), "created")
        if keyed:
            first: dict[str, int] = {}
            for i in keyed:  # the same key twice in one batch is one event
                first.setdefault(rows[i]["idempotency_key"], i)
            unique_rows = [rows[i] for i in first.values()]
            if conn.dialect.name == "postgresql":
                created = _pg_insert_keyed(conn, unique_rows)
            else:
                stmt = sqlite.insert(table).on_conflict_do_nothing(
                    index_elements=["idempotency_key"]).returning(table.c.id,
                                                                  table.c.idempotency_key)
                created = {k: v for v, k in conn.execute(stmt, unique_rows).all()}
            existing = {k for k in first if k not in created}
            if existing:
                created_dupes = dict(conn.execute(select(table.c.idempotency_key, table.c.id)
                                                  .where(table.c.idempotency_key.in_(existing)))
                                     .all())
            else:
                created_dupes = {}
            for i in keyed:
                k = rows[i]["idempotency_key"]
                new = k in created and first[k] == i
                out[i] = (int(created[k] if k in created else created_dupes[k]),
                          "created" if new else "duplicate")
        return [r for r in out if r is not None]


# Column -> PostgreSQL type for json_to_recordset, in insert order.
_PG_COLUMNS = {
    "kind": "text", "annotator_id": "bigint", "prompt_id": "bigint", "response_a_id": "bigint",
    "response_b_id": "bigint", "response_id": "bigint", "choice": "text", "payload": "json",
    "rationale": "text", "shown_left_id": "bigint", "time_spent_ms": "integer",
    "idempotency_key": "text", "source": "text", "created_at": "timestamp",
}
_PG_INSERT = text(
    f"INSERT INTO feedback ({', '.join(_PG_COLUMNS)}) "
    f"SELECT {', '.join(_PG_COLUMNS)} FROM json_to_recordset(CAST(:rows AS json)) AS x("
    + ", ".join(f"{c} {t}" for c, t in _PG_COLUMNS.items())
    + ") ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key")


def _pg_insert_keyed(conn: Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert keyed rows on PostgreSQL as ONE json parameter; returns {key: id} of new rows.

    A multi-row VALUES insert of 500 events has 7,000 parameters, and psycopg's parsing of
    such a statement cost more CPU than everything else in a batch; one JSON document is
    parsed by the server instead.
    """
    doc = json.dumps([{c: r[c] for c in _PG_COLUMNS} for r in rows], default=str)
    return {k: int(v) for v, k in conn.execute(_PG_INSERT, {"rows": doc}).all()}


def _response_ids(ev: AnyEvent) -> list[int]:
    return [rid for _, rid in _named_ids(ev)]


def _named_ids(ev: AnyEvent) -> list[tuple[str, int]]:
    if isinstance(ev, PairwiseEvent):
        return [("response_a_id", ev.response_a_id), ("response_b_id", ev.response_b_id)]
    if isinstance(ev, RankingEvent):
        return [(f"response_ids[{j}]", rid) for j, rid in enumerate(ev.response_ids)]
    return [("response_id", ev.response_id)]


def _kind_fields(ev: AnyEvent) -> dict[str, Any]:
    """The kind-specific columns and payload, as documented on ``Feedback``."""
    if isinstance(ev, PairwiseEvent):
        return {"response_a_id": ev.response_a_id, "response_b_id": ev.response_b_id,
                "choice": ev.choice, "shown_left_id": ev.shown_left_id,
                "payload": {"choice": ev.choice, "strength": ev.strength}}
    if isinstance(ev, RankingEvent):
        return {"payload": {"order": list(ev.response_ids)}}
    if isinstance(ev, RatingEvent):
        return {"response_id": ev.response_id, "payload": {"scores": dict(ev.scores)}}
    if isinstance(ev, BinaryEvent):
        return {"response_id": ev.response_id, "payload": {"value": ev.value}}
    return {"response_id": ev.response_id, "payload": {"signal": ev.signal, "value": ev.value}}
