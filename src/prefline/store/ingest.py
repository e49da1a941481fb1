"""Import validated examples into the store: one transaction, idempotent, bulk inserts.

Prompts and responses are keyed by content hash; every feedback row gets an idempotency
key derived from its annotator and content (plus an occurrence counter, so a record that
appears twice in one file is stored twice), so re-importing a file adds nothing and
importing a file with appended lines adds only the new lines. Rows go in through
``store.bulk`` (``INSERT ... ON CONFLICT DO NOTHING``; COPY on PostgreSQL).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine

from prefline.base.errors import PreflineError
from prefline.base.hashing import canonical_json
from prefline.formats.examples import (
    Messages,
    PreferencePair,
    RankingExample,
    UnpairedExample,
)
from prefline.formats.load import load_records
from prefline.formats.records import Example, Record, messages_json
from prefline.store.bulk import (
    bulk_session,
    driver_errors,
    dumps,
    insert_ignore,
    timestamp,
    upsert_ids,
)
from prefline.store.db import open_store
from prefline.store.models import ANNOTATOR_KINDS, AuditLog, utcnow


@dataclass
class ImportSummary:
    """What one import added. ``feedback_existing`` counts records already in the store;
    ``by_kind`` counts the file's records per feedback kind (pairwise, binary, ...);
    ``skipped_identical`` lists the lines of pairs skipped because chosen equals rejected."""

    path: str
    source: str
    records: int = 0
    prompts_added: int = 0
    responses_added: int = 0
    feedback_added: int = 0
    feedback_existing: int = 0
    skipped_identical: list[int] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def response_hash(prompt_key: str, text: str, model: str | None = None,
                  model_version: str | None = None) -> str:
    """The one response identity used by import, generation and the ingest API.

    Responses belong to a prompt, so the same text under two prompts is two rows; the same
    text from two named models is two rows too, while text with no model recorded (as in
    imported preference files) hashes to the same row whichever path stored it.
    """
    if model is None and model_version is None:
        return _sha(prompt_key, text)
    return _sha(prompt_key, text, model or "", model_version or "")


def _texts(ex: Example) -> list[str]:
    """The response texts an example mentions, in a fixed order."""
    if isinstance(ex, PreferencePair):
        return [ex.chosen, ex.rejected]
    if isinstance(ex, UnpairedExample):
        return [ex.completion]
    if isinstance(ex, RankingExample):
        return list(ex.responses)
    return [ex.response]


_PROMPT_COLS = ("content_hash", "text", "messages", "context", "tags", "created_at")
_RESPONSE_COLS = ("content_hash", "prompt_id", "text", "model", "model_version", "gen_params",
                  "created_at")
_FEEDBACK_COLS = ("kind", "annotator_id", "prompt_id", "response_a_id", "response_b_id",
                  "response_id", "choice", "payload", "idempotency_key", "source", "created_at")


def _prompt_rows(records: Sequence[Record], now: Any) -> dict[str, tuple[Any, ...]]:
    tags: dict[str, list[str]] = {}
    prompts: dict[str, Messages] = {}
    for rec in records:
        ex = rec.example
        prompts.setdefault(ex.prompt_key, ex.prompt)
        seen = tags.setdefault(ex.prompt_key, [])
        seen.extend(t for t in ex.tags if t not in seen)
    rows = {}
    for key, msgs in prompts.items():
        text = msgs[0]["content"] if len(msgs) == 1 and msgs[0]["role"] == "user" else None
        rows[key] = (key, text, messages_json(msgs), None, dumps(tags[key]) if tags[key] else "[]", now)
    return rows


def _feedback_cols(ex: Example, rids: list[int]) -> tuple[Any, ...]:
    """(kind, response_a_id, response_b_id, response_id, choice, payload) for one example
    whose ``_texts`` have the response ids ``rids``."""
    if isinstance(ex, PreferencePair):
        choice = "tie" if ex.tie else "a"
        return ("pairwise", rids[0], rids[1], None, choice, {"choice": choice, "strength": ex.strength})
    if isinstance(ex, UnpairedExample):
        return ("binary", None, None, rids[0], None, {"value": ex.label})
    if isinstance(ex, RankingExample):
        return ("ranking", None, None, None, None, {"order": rids})
    return ("rating", None, None, rids[0], None, {"scores": ex.scores})


def _feedback_key(annotator: str, ex: Example, response_hashes: list[str],
                  seen: Counter[tuple[str, ...]]) -> str:
    """Same annotator + same judgment → same key; the n-th repeat in a file gets n.

    Response hashes already cover the prompt, so they stand in for prompt and texts."""
    scores = getattr(ex, "scores", None)
    extra = (f"{getattr(ex, 'tie', None)}|{getattr(ex, 'strength', None)}|"
             f"{getattr(ex, 'label', None)}|{canonical_json(scores) if scores else ''}")
    base = (annotator, type(ex).__name__, extra, *response_hashes)
    seen[base] += 1
    return "import:" + _sha(*base, str(seen[base]))


def _annotator_ids(conn: Connection, records: Sequence[Record], default: str, default_kind: str,
                   path: str, now: Any) -> dict[str, int]:
    """Ids for every annotator the records name, creating the missing ones."""
    kinds: dict[str, str] = {}
    for rec in records:
        kind = rec.annotator_kind or default_kind
        if kind not in ANNOTATOR_KINDS:
            raise PreflineError(f"unknown annotator kind {kind!r}; expected one of "
                                f"{', '.join(ANNOTATOR_KINDS)}", path=path, line=rec.line,
                                field="annotator_kind")
        kinds.setdefault(rec.annotator or default, kind)
    rows = {n: (n, k, None, None, now) for n, k in kinds.items()}
    return upsert_ids(conn, "annotators", ("name", "kind", "role", "config", "created_at"),
                      rows, "name")[0]


def write_records(conn: Connection, records: Sequence[Record], *, source: str,
                  annotator: str, annotator_kind: str, summary: ImportSummary) -> None:
    """Insert ``records`` in the caller's transaction and fill in ``summary``'s counts."""
    now = timestamp(conn, utcnow())
    annotator_ids = _annotator_ids(conn, records, annotator, annotator_kind, summary.path, now)
    prompt_ids, summary.prompts_added = upsert_ids(
        conn, "prompts", _PROMPT_COLS, _prompt_rows(records, now), "content_hash")
    hashes = [[response_hash(r.example.prompt_key, t) for t in _texts(r.example)] for r in records]
    responses: dict[str, tuple[Any, ...]] = {}
    for rec, hs in zip(records, hashes, strict=True):
        pid = prompt_ids[rec.example.prompt_key]
        for h, text in zip(hs, _texts(rec.example), strict=True):
            if h not in responses:
                responses[h] = (h, pid, text, None, None, None, now)
    response_ids, summary.responses_added = upsert_ids(
        conn, "responses", _RESPONSE_COLS, responses, "content_hash")
    seen: Counter[tuple[str, ...]] = Counter()
    feedback: dict[str, tuple[Any, ...]] = {}
    payloads: dict[str, str | None] = {}  # most payloads repeat ({"choice": "a", ...}): encode once
    for rec, hs in zip(records, hashes, strict=True):
        ex, name = rec.example, rec.annotator or annotator
        kind, a, b, r, choice, payload = _feedback_cols(ex, [response_ids[h] for h in hs])
        key = _feedback_key(name, ex, hs, seen)
        memo = f"{choice}|{payload.get('strength')}" if kind == "pairwise" else ""
        encoded = payloads.get(memo) if memo else None
        if encoded is None:
            encoded = dumps(payload)
            if memo:
                payloads[memo] = encoded
        feedback[key] = (kind, annotator_ids[name], prompt_ids[ex.prompt_key], a, b, r, choice,
                         encoded, key, source, now)
    summary.feedback_added = insert_ignore(conn, "feedback", _FEEDBACK_COLS,
                                           list(feedback.values()), "idempotency_key")
    summary.feedback_existing = len(feedback) - summary.feedback_added
    summary.by_kind = dict(Counter(row[0] for row in feedback.values()))


def import_file(path: str | Path, db: str | Engine | None = None, *, format: str = "auto",
                source: str | None = None, annotator: str | None = None,
                annotator_kind: str = "human", actor: str = "cli",
                progress: Callable[[int], None] | None = None,
                skip_identical: bool | None = None,
                stage: Callable[[str], None] | None = None) -> ImportSummary:
    """Validate all of ``path``, then store it in one transaction (all or nothing).

    ``source`` defaults to the file name and ``annotator`` to ``import:<source>``; records
    with their own ``annotator``/``annotator_kind`` fields override both. ``skip_identical``
    is passed to :func:`prefline.formats.load.load_records`. ``progress`` gets the records
    read so far and ``stage`` is told "writing" once the file has validated. Returns counts.
    """
    start = time.perf_counter()
    path = Path(path)
    skipped: list[int] = []
    records = load_records(path, format, progress=progress, skip_identical=skip_identical,
                           skipped=skipped)
    source = source or path.name
    summary = ImportSummary(path=str(path), source=source, records=len(records),
                            skipped_identical=skipped)
    engine = db if isinstance(db, Engine) else open_store(db)
    if stage is not None:
        stage("writing")
    try:
        _write(engine, path, records, summary, format, actor, annotator, annotator_kind)
    except driver_errors() as exc:  # rows go straight to the driver, so its errors arrive raw
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PreflineError(f"the database refused the import, nothing was written: {reason}",
                            path=str(path)) from None
    summary.seconds = time.perf_counter() - start
    return summary


def _write(engine: Engine, path: Path, records: list[Record], summary: ImportSummary,
           format: str, actor: str, annotator: str | None, annotator_kind: str) -> None:
    source = summary.source
    with engine.begin() as conn, bulk_session(conn):
        write_records(conn, records, source=source, annotator=annotator or f"import:{source}",
                      annotator_kind=annotator_kind, summary=summary)
        conn.execute(AuditLog.__table__.insert(), [{  # type: ignore[attr-defined]
            "actor": actor, "action": "import", "target": f"source:{source}", "created_at": utcnow(),
            "details": {"path": str(path.resolve()), "format": format, "records": summary.records,
                        "feedback_added": summary.feedback_added,
                        "feedback_existing": summary.feedback_existing,
                        "skipped_identical": len(summary.skipped_identical)}}])
