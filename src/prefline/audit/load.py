"""Read what the audit needs from the store into numpy arrays, with few narrow queries.

Only the columns the checks use are selected (never whole ORM objects), response texts are
reduced to their lengths inside the database, and JSON payloads are fetched only for the
feedback kinds that keep their label there (ranking, rating, binary). That keeps a
100,000-event audit to a few seconds of I/O on SQLite.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from prefline.base.errors import PreflineError
from prefline.store.models import (
    FEEDBACK_KINDS,
    PAIRWISE_CHOICES,
    Annotator,
    Feedback,
    Prompt,
    Response,
    Snapshot,
    SnapshotItem,
)
from prefline.store.snapshots import not_superseded

MISSING = -1  # stands for SQL NULL in the integer id arrays


@dataclass
class AuditData:
    """Feedback rows as parallel arrays (one entry per event, ``M`` events in all).

    ``kind``/``choice`` are indexes into ``FEEDBACK_KINDS``/``PAIRWISE_CHOICES`` (-1 = NULL);
    ``annotator`` indexes ``annotator_names``; response ids are -1 where NULL;
    ``time_ms`` is float with NaN where not recorded. ``payloads`` maps an event's row
    index to its JSON payload, for ranking/rating/binary events only.
    """

    feedback_id: np.ndarray
    kind: np.ndarray
    annotator: np.ndarray
    prompt_id: np.ndarray
    response_a: np.ndarray
    response_b: np.ndarray
    response: np.ndarray
    choice: np.ndarray
    shown_left: np.ndarray
    time_ms: np.ndarray
    payloads: dict[int, dict[str, Any]]
    annotator_names: list[str]
    annotator_kinds: list[str]
    response_length: dict[int, int] = field(default_factory=dict)
    prompt_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    prompt_texts: list[str] = field(default_factory=list)
    prompt_tags: list[list[str]] = field(default_factory=list)
    prompt_openings: list[str] = field(default_factory=list)
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    snapshot_id: int | None = None

    @property
    def n_events(self) -> int:
        return int(self.feedback_id.shape[0])

    def kind_mask(self, kind: str) -> np.ndarray:
        return self.kind == FEEDBACK_KINDS.index(kind)

    def kind_names(self) -> np.ndarray:
        """The kind of each event as a string array (``unknown`` for unrecognised kinds)."""
        names = np.array([*FEEDBACK_KINDS, "unknown"], dtype=object)
        return names[self.kind]


def _ids(values: Sequence[Any]) -> np.ndarray:
    return np.fromiter((MISSING if v is None else v for v in values), np.int64, len(values))


def _codes(values: Sequence[Any], vocab: Sequence[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(vocab)}
    return np.fromiter((index.get(v, -1) for v in values), np.int8, len(values))


@dataclass(frozen=True)
class Scope:
    """Which feedback an audit reads. ``feedback``: SQL conditions on the feedback table;
    ``tag``: keep only prompts carrying this tag (JSON lists are filtered in Python, which
    is portable); ``snapshot_id``: also read that snapshot's prompts and splits."""

    feedback: tuple[Any, ...] = ()
    tag: str | None = None
    snapshot_id: int | None = None

    def prompts(self, column: Any) -> Any | None:
        """A condition on a prompt-id column: prompts with in-scope feedback or in the
        snapshot (None = every prompt)."""
        if self.snapshot_id is None:
            return None
        f = Feedback.__table__.c
        items = select(SnapshotItem.prompt_id).where(SnapshotItem.snapshot_id == self.snapshot_id)
        return column.in_(select(f.prompt_id).where(*self.feedback)) | column.in_(items)


def snapshot_scope(conn: Connection, snapshot_id: int) -> Scope:
    """The feedback a snapshot was built from: its recipe's filters (source, annotator kind,
    time range, tag), and nothing added after it was created. Pairs the consensus dropped
    (e.g. split votes under ``ties=drop``) stay in, so their disagreement is audited too."""
    row = conn.execute(select(Snapshot.recipe, Snapshot.created_at).where(Snapshot.id == snapshot_id)).first()
    if row is None:
        raise PreflineError(f"snapshot {snapshot_id} does not exist in this store", field="--snapshot")
    filters = (row[0] or {}).get("filters") or {}
    f = Feedback.__table__.c
    conds: list[Any] = [f.created_at <= row[1]]
    if filters.get("source"):
        conds.append(f.source == filters["source"])
    if filters.get("annotator_kind"):
        conds.append(f.annotator_id.in_(select(Annotator.id).where(Annotator.kind == filters["annotator_kind"])))
    if filters.get("since"):
        conds.append(f.created_at >= dt.datetime.fromisoformat(filters["since"]))
    if filters.get("until"):
        conds.append(f.created_at < dt.datetime.fromisoformat(filters["until"]))
    return Scope(tuple(conds), filters.get("tag") or None, snapshot_id)


def _load_feedback(conn: Connection, scope: Scope) -> dict[str, Any]:
    f = Feedback.__table__.c
    stmt = select(f.id, f.kind, f.annotator_id, f.prompt_id, f.response_a_id, f.response_b_id,
                  f.response_id, f.choice, f.shown_left_id, f.time_spent_ms).where(
                      *scope.feedback, not_superseded())  # an edited label votes once
    rows = conn.execute(stmt.order_by(f.id)).all()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 10
    times = np.array([np.nan if v is None else v for v in cols[9]], dtype=np.float64)
    payload_stmt = select(f.id, f.payload).where(f.kind.in_(("ranking", "rating", "binary")), *scope.feedback)
    by_id: dict[int, dict[str, Any]] = dict(conn.execute(payload_stmt).all())
    fid = _ids(cols[0])
    payloads = {i: by_id[int(x)] for i, x in enumerate(fid) if int(x) in by_id}
    return {
        "feedback_id": fid, "kind": _codes(cols[1], FEEDBACK_KINDS), "annotator_id": _ids(cols[2]),
        "prompt_id": _ids(cols[3]), "response_a": _ids(cols[4]), "response_b": _ids(cols[5]),
        "response": _ids(cols[6]), "choice": _codes(cols[7], PAIRWISE_CHOICES),
        "shown_left": _ids(cols[8]), "time_ms": times, "payloads": payloads,
    }


def _keep_tagged(fb: dict[str, Any], prompts: dict[str, Any], tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Drop prompts without ``tag`` and the feedback on them (payload keys re-indexed)."""
    has = np.array([tag in tags for tags in prompts["prompt_tags"]], dtype=bool)
    kept = {k: (v[has] if isinstance(v, np.ndarray) else [x for x, h in zip(v, has, strict=True) if h])
            for k, v in prompts.items()}
    keep = np.isin(fb["prompt_id"], kept["prompt_ids"])
    new_index = np.cumsum(keep) - 1
    out: dict[str, Any] = {k: v[keep] for k, v in fb.items() if isinstance(v, np.ndarray)}
    out["payloads"] = {int(new_index[i]): v for i, v in fb["payloads"].items() if keep[i]}
    return out, kept


def _prompt_text(text: str | None, messages: list[Any] | None) -> str:
    if text:
        return text
    if not messages:
        return ""
    return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in messages)


def _opening(text: str, messages: list[Any] | None) -> str:
    """The first user message of a conversation (the question it opens with)."""
    for m in messages or []:
        if isinstance(m, dict) and m.get("role") == "user":
            return str(m.get("content", ""))
    return text


def _load_prompts(conn: Connection, scope: Scope) -> dict[str, Any]:
    p = Prompt.__table__.c
    stmt = select(p.id, p.text, p.messages, p.tags).order_by(p.id)
    where = scope.prompts(p.id)
    rows = conn.execute(stmt if where is None else stmt.where(where)).all()
    texts = [_prompt_text(r[1], r[2]) for r in rows]
    return {"prompt_ids": np.fromiter((r[0] for r in rows), np.int64, len(rows)),
            "prompt_texts": texts,
            "prompt_openings": [_opening(t, r[2]) for t, r in zip(texts, rows, strict=True)],
            "prompt_tags": [[str(t) for t in (r[3] or [])] for r in rows]}


def _load_lengths(conn: Connection, scope: Scope) -> dict[int, int]:
    """Response length in characters, computed by the database so texts never travel."""
    r = Response.__table__.c
    stmt = select(r.id, func.length(r.text))
    where = scope.prompts(r.prompt_id)
    stmt = stmt if where is None else stmt.where(where)
    return {int(i): int(n or 0) for i, n in conn.execute(stmt)}


def _load_splits(conn: Connection, snapshot_id: int) -> dict[str, np.ndarray]:
    s = SnapshotItem.__table__.c
    rows = conn.execute(select(s.split, s.prompt_id).where(s.snapshot_id == snapshot_id)).all()
    by_split: dict[str, set[int]] = {}
    for split, pid in rows:
        by_split.setdefault(str(split), set()).add(int(pid))
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in by_split.items()}


def load_audit_data(conn: Connection, snapshot_id: int | None = None) -> AuditData:
    """Everything the checks read: the whole store, or what :func:`snapshot_scope` says a
    snapshot was built from. Raises PreflineError if the snapshot does not exist."""
    scope = Scope() if snapshot_id is None else snapshot_scope(conn, snapshot_id)
    fb = _load_feedback(conn, scope)
    prompts = _load_prompts(conn, scope)
    if scope.tag is not None:
        fb, prompts = _keep_tagged(fb, prompts, scope.tag)
    a = Annotator.__table__.c
    ann_rows = conn.execute(select(a.id, a.name, a.kind).order_by(a.id)).all()
    position = {int(r[0]): i for i, r in enumerate(ann_rows)}
    annotator = np.fromiter((position[int(x)] for x in fb.pop("annotator_id")), np.int64,
                            fb["feedback_id"].shape[0])
    return AuditData(
        annotator=annotator, annotator_names=[str(r[1]) for r in ann_rows],
        annotator_kinds=[str(r[2]) for r in ann_rows], response_length=_load_lengths(conn, scope),
        **prompts, splits=_load_splits(conn, snapshot_id) if snapshot_id is not None else {},
        snapshot_id=snapshot_id, **fb,
    )
