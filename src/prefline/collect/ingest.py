"""Writing production prompts, responses and feedback into the store, fast and exactly once.

A batch is one transaction: it is validated against the store first (every referenced
response exists, pairs share a prompt, a reused idempotency key comes with the same body),
then inserted with ``ON CONFLICT DO NOTHING`` on (API key id, idempotency key), so a retried
request (or two racing copies of it) stores each event once and reports the row that already
exists. Keys are scoped by the API key's *id*: two keys' clients can never collide, whatever
their names contain. The same key with another body is a conflict (409), never silently
dropped; rows stored before migration 0004 have no body hash and are not checked.
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
from sqlalchemy.exc import IntegrityError

from prefline.base.hashing import content_hash
from prefline.base.text import printable
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
    """A request that is well-formed JSON but refers to something that does not exist (422),
    or reuses an idempotency key for another body (409)."""

    def __init__(self, message: str, field: str, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.status = field, status


def body_hash(ev: AnyEvent) -> str:
    """sha256 of the event as sent, less its idempotency key (what a retry must repeat)."""
    body = ev.model_dump(mode="json", exclude={"idempotency_key"})
    if body.get("segment") is None:  # events sent before segments existed keep their hash
        body.pop("segment", None)
    return content_hash(body)


def annotator_name(key_name: str, user: str | None) -> str:
    """``api:<key>`` or ``api:<key>:<user>``; ``%`` and ``:`` in a user id are escaped so that
    the last ``:`` always ends the key name (key ``a:b`` + user ``c`` ≠ key ``a`` + user
    ``b:c``). ``api:<key>:implicit`` is the implicit-signal annotator (user ``implicit`` is
    reserved by the schema)."""
    if user is None:
        return f"api:{key_name}"
    return f"api:{key_name}:{user.replace('%', '%25').replace(':', '%3A')}"


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
    """The events of one request, written under one API key (``key_id`` scopes idempotency
    keys; events with a key need it)."""

    events: Sequence[AnyEvent]
    key_name: str
    field_prefix: str = ""
    key_id: int | None = None


class FeedbackWriter:
    """Writes validated events for one server process; caches immutable lookups.

    Responses never change their prompt and annotators are never deleted, so both maps
    are cached (bounded) to keep the hot path at a handful of statements per batch; a
    response deleted since (forget, prune) makes the insert fail, and the retry re-reads.
    """

    CACHE_MAX = 200_000

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._prompt_of: dict[int, int] = {}
        self._annotators: dict[str, int] = {}
        self._lock = threading.Lock()

    def write(self, events: Sequence[AnyEvent], key_name: str, field_prefix: str = "",
              key_id: int | None = None) -> list[tuple[int, str]]:
        """Store events; returns ``(feedback id, "created"|"duplicate")`` per event, in order.

        Raises IngestError naming ``{field_prefix}[i].field`` when a reference is unknown or
        an idempotency key was used with another body; nothing is written then.
        """
        result = self.write_group([Job(events, key_name, field_prefix, key_id)])[0]
        if isinstance(result, IngestError):
            raise result
        return result

    def write_group(self, jobs: Sequence[Job]) -> list[list[tuple[int, str]] | IngestError]:
        """Several requests' events in ONE transaction (group commit), result per job.

        A job with an unknown reference gets its IngestError and contributes no rows; the
        others are still written.
        """
        try:
            return self._write_group(jobs)
        except IntegrityError:
            # A cached response was deleted since (``users forget``, ``store prune``): drop
            # the cache and validate again, which now finds it missing (a 422, not a 500).
            with self._lock:
                self._prompt_of.clear()
            return self._write_group(jobs)

    def _write_group(self, jobs: Sequence[Job]) -> list[list[tuple[int, str]] | IngestError]:
        new_annotators: dict[str, int] = {}
        prepared: list[list[dict[str, Any]] | IngestError] = []
        with self.engine.begin() as conn:
            for job in jobs:
                try:
                    prompt_of = self._prompts_for(conn, job.events, job.field_prefix)
                    prepared.append([self._row(conn, ev, job, prompt_of, new_annotators)
                                     for ev in job.events])
                except IngestError as exc:
                    prepared.append(exc)
            stored = _stored_keys(conn, [r for rows in prepared if isinstance(rows, list)
                                         for r in rows])
            pending: dict[tuple[int, str], str] = {}
            prepared = [rows if isinstance(rows, IngestError) else
                        _conflicts(rows, job.field_prefix, stored, pending)
                        for rows, job in zip(prepared, jobs, strict=True)]
            flat = [row for rows in prepared if isinstance(rows, list) for row in rows]
            results = iter(self._insert(conn, flat, stored))
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

    def _row(self, conn: Connection, ev: AnyEvent, job: Job, prompt_of: dict[int, int],
             new: dict[str, int]) -> dict[str, Any]:
        if isinstance(ev, ImplicitEvent):
            annotator = self._annotator(conn, annotator_name(job.key_name, "implicit"),
                                        "implicit", new)
        else:
            annotator = self._annotator(conn, annotator_name(job.key_name, ev.user), "human", new)
        if ev.idempotency_key is not None and job.key_id is None:
            raise ValueError("events with an idempotency key need the API key's id")
        ids = _response_ids(ev)
        row: dict[str, Any] = {
            "kind": ev.kind, "annotator_id": annotator, "prompt_id": prompt_of[ids[0]],
            "response_a_id": None, "response_b_id": None, "response_id": None, "choice": None,
            "rationale": ev.rationale, "shown_left_id": None, "time_spent_ms": ev.time_spent_ms,
            "idempotency_key": None, "source": f"api:{job.key_name}", "created_at": utcnow(),
            "api_key_id": job.key_id, "api_idempotency_key": ev.idempotency_key,
            "body_hash": body_hash(ev) if ev.idempotency_key is not None else None,
            "user_id": ev.user, "segment": ev.segment or None,
        }
        row.update(_kind_fields(ev))
        return row

    def _insert(self, conn: Connection, rows: list[dict[str, Any]],
                stored: dict[tuple[int, str], tuple[int, str | None]]) -> list[tuple[int, str]]:
        table: Table = Feedback.__table__  # type: ignore[assignment]
        out: list[tuple[int, str] | None] = [None] * len(rows)
        keyed = [i for i, r in enumerate(rows) if r["api_idempotency_key"] is not None]
        plain = [i for i, r in enumerate(rows) if r["api_idempotency_key"] is None]
        if plain:
            ids = conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True),
                               [rows[i] for i in plain]).scalars().all()
            for i, fid in zip(plain, ids, strict=True):
                out[i] = (int(fid), "created")
        if keyed:
            first: dict[tuple[int, str], int] = {}
            for i in keyed:  # the same key twice in one batch is one event
                first.setdefault(_scoped(rows[i]), i)
            fresh = [rows[i] for k, i in first.items() if k not in stored]
            created = _insert_keyed(conn, fresh) if fresh else {}
            missing = [k for k in first if k not in created and k not in stored]
            if missing:  # inserted by a racing request since _stored_keys looked
                stored = {**stored, **_stored_keys(conn, [rows[first[k]] for k in missing])}
            for i in keyed:
                k = _scoped(rows[i])
                new = k in created and first[k] == i
                out[i] = (int(created[k] if k in created else stored[k][0]),
                          "created" if new else "duplicate")
        return [r for r in out if r is not None]


def _scoped(row: dict[str, Any]) -> tuple[int, str]:
    return int(row["api_key_id"]), str(row["api_idempotency_key"])


def _stored_keys(conn: Connection, rows: list[dict[str, Any]]
                 ) -> dict[tuple[int, str], tuple[int, str | None]]:
    """``{(api key id, idempotency key): (feedback id, body hash)}`` of keys already stored.

    One API key id per statement and its keys in an IN list, so the unique index on
    (api_key_id, api_idempotency_key) is searched on both columns: a row-value IN over the
    pair used it on the key id alone (SQLite then read every event the key ever sent, per
    request). Plain driver SQL: building the SQLAlchemy statement cost more than running it.
    """
    wanted: dict[int, set[str]] = {}
    for r in rows:
        if r["api_idempotency_key"] is not None:
            wanted.setdefault(int(r["api_key_id"]), set()).add(str(r["api_idempotency_key"]))
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    found: dict[tuple[int, str], tuple[int, str | None]] = {}
    for kid, keys in wanted.items():
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):  # well below SQLite's parameter limit
            chunk = ordered[start:start + 500]
            sql = (f"SELECT api_idempotency_key, id, body_hash FROM feedback WHERE api_key_id = "
                   f"{mark} AND api_idempotency_key IN ({', '.join([mark] * len(chunk))})")
            for key, fid, digest in conn.exec_driver_sql(sql, (kid, *chunk)):
                found[(kid, str(key))] = (int(fid), digest)
    return found


def _conflicts(rows: list[dict[str, Any]], prefix: str,
               stored: dict[tuple[int, str], tuple[int, str | None]],
               pending: dict[tuple[int, str], str]) -> list[dict[str, Any]] | IngestError:
    """``rows``, or a 409 IngestError when one reuses an idempotency key with another body
    (than the stored event, or an earlier event of this group). ``pending`` collects the
    accepted rows' keys."""
    mine: dict[tuple[int, str], str] = {}
    for i, row in enumerate(rows):
        if row["api_idempotency_key"] is None:
            continue
        k = _scoped(row)
        before = stored[k][1] if k in stored else pending.get(k, mine.get(k))
        if before is not None and before != row["body_hash"]:
            where = f"{prefix}[{i}]." if prefix else ""
            seen = f" (feedback {stored[k][0]})" if k in stored else " earlier in this request"
            return IngestError(
                f"idempotency key {printable(k[1])!r} was already used with a different body"
                f"{seen}; a retry must repeat the event exactly, a new event needs a new key",
                f"{where}idempotency_key", status=409)
        mine.setdefault(k, row["body_hash"])
    pending.update({k: v for k, v in mine.items() if k not in pending})
    return rows


# Column -> PostgreSQL type for json_to_recordset, in insert order.
_PG_COLUMNS = {
    "kind": "text", "annotator_id": "bigint", "prompt_id": "bigint", "response_a_id": "bigint",
    "response_b_id": "bigint", "response_id": "bigint", "choice": "text", "payload": "json",
    "rationale": "text", "shown_left_id": "bigint", "time_spent_ms": "integer",
    "idempotency_key": "text", "source": "text", "created_at": "timestamp",
    "api_key_id": "bigint", "api_idempotency_key": "text", "body_hash": "text",
    "user_id": "text", "segment": "json",
}
_KEY_COLUMNS = "api_key_id, api_idempotency_key"
_PG_INSERT = text(
    f"INSERT INTO feedback ({', '.join(_PG_COLUMNS)}) "
    f"SELECT {', '.join(_PG_COLUMNS)} FROM json_to_recordset(CAST(:rows AS json)) AS x("
    + ", ".join(f"{c} {t}" for c, t in _PG_COLUMNS.items())
    + f") ON CONFLICT ({_KEY_COLUMNS}) DO NOTHING RETURNING id, {_KEY_COLUMNS}")


def _insert_keyed(conn: Connection, rows: list[dict[str, Any]]) -> dict[tuple[int, str], int]:
    """Insert keyed rows, skipping keys that exist; returns {(key id, key): id} of new rows.

    On PostgreSQL the rows go as ONE json parameter: a multi-row VALUES insert of 500
    events has 7,000 parameters, and psycopg's parsing of such a statement cost more CPU
    than everything else in a batch; one JSON document is parsed by the server instead.
    """
    if conn.dialect.name == "postgresql":
        doc = json.dumps([{c: r[c] for c in _PG_COLUMNS} for r in rows], default=str)
        found = conn.execute(_PG_INSERT, {"rows": doc}).all()
    else:
        found = []
        for start in range(0, len(rows), _SQLITE_ROWS):
            found += _sqlite_insert_keyed(conn, rows[start:start + _SQLITE_ROWS])
    return {(int(kid), key): int(fid) for fid, kid, key in found}


_SQLITE_ROWS = 1000
"""Rows per SQLite insert: 19,000 parameters, below SQLite's limit of 32,766."""


def _sqlite_insert_keyed(conn: Connection, rows: list[dict[str, Any]]) -> list[Any]:
    """One multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` in plain driver SQL:
    SQLAlchemy's per-statement and per-row work cost more than SQLite's. Values are written
    as SQLAlchemy writes them (JSON columns by ``json.dumps``, so None is ``null``; the
    DateTime text format), so rows look the same whichever path stored them."""
    params: list[Any] = []
    for r in rows:
        for col in _PG_COLUMNS:
            value = r[col]
            if col in ("payload", "segment"):
                value = json.dumps(value)
            elif col == "created_at":
                value = value.strftime("%Y-%m-%d %H:%M:%S.%f")
            params.append(value)
    one = f"({', '.join('?' * len(_PG_COLUMNS))})"
    sql = (f"INSERT INTO feedback ({', '.join(_PG_COLUMNS)}) VALUES {', '.join([one] * len(rows))}"
           f" ON CONFLICT ({_KEY_COLUMNS}) DO NOTHING RETURNING id, {_KEY_COLUMNS}")
    return list(conn.exec_driver_sql(sql, tuple(params)).all())


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
