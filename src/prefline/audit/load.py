"""Read what the audit needs from the store into numpy arrays, with few narrow queries.

Only the columns the checks use are selected (never whole ORM objects), response texts are
reduced to their lengths inside the database, and JSON payloads are fetched only for the
feedback kinds that keep their label there (ranking, rating, binary). That keeps a
100,000-event audit to a few seconds of I/O on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Select, func, select
from sqlalchemy.engine import Connection

from prefline.errors import PreflineError
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


def _scoped(stmt: Select[Any], column: Any, snapshot_id: int | None) -> Select[Any]:
    """Restrict a query to the prompts of one snapshot (a sub-select, no Python-side IN)."""
    if snapshot_id is None:
        return stmt
    sub = select(SnapshotItem.prompt_id).where(SnapshotItem.snapshot_id == snapshot_id)
    return stmt.where(column.in_(sub))


def _load_feedback(conn: Connection, snapshot_id: int | None) -> dict[str, Any]:
    f = Feedback.__table__.c
    stmt = select(f.id, f.kind, f.annotator_id, f.prompt_id, f.response_a_id, f.response_b_id,
                  f.response_id, f.choice, f.shown_left_id, f.time_spent_ms).order_by(f.id)
    rows = conn.execute(_scoped(stmt, f.prompt_id, snapshot_id)).all()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 10
    times = np.array([np.nan if v is None else v for v in cols[9]], dtype=np.float64)
    payload_stmt = select(f.id, f.payload).where(f.kind.in_(("ranking", "rating", "binary")))
    by_id: dict[int, dict[str, Any]] = dict(conn.execute(_scoped(payload_stmt, f.prompt_id, snapshot_id)).all())
    fid = _ids(cols[0])
    payloads = {i: by_id[int(x)] for i, x in enumerate(fid) if int(x) in by_id}
    return {
        "feedback_id": fid, "kind": _codes(cols[1], FEEDBACK_KINDS), "annotator_id": _ids(cols[2]),
        "prompt_id": _ids(cols[3]), "response_a": _ids(cols[4]), "response_b": _ids(cols[5]),
        "response": _ids(cols[6]), "choice": _codes(cols[7], PAIRWISE_CHOICES),
        "shown_left": _ids(cols[8]), "time_ms": times, "payloads": payloads,
    }


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


def _load_prompts(conn: Connection, snapshot_id: int | None) -> dict[str, Any]:
    p = Prompt.__table__.c
    rows = conn.execute(_scoped(select(p.id, p.text, p.messages, p.tags).order_by(p.id), p.id,
                                snapshot_id)).all()
    texts = [_prompt_text(r[1], r[2]) for r in rows]
    return {"prompt_ids": np.fromiter((r[0] for r in rows), np.int64, len(rows)),
            "prompt_texts": texts,
            "prompt_openings": [_opening(t, r[2]) for t, r in zip(texts, rows, strict=True)],
            "prompt_tags": [[str(t) for t in (r[3] or [])] for r in rows]}


def _load_lengths(conn: Connection, snapshot_id: int | None) -> dict[int, int]:
    """Response length in characters, computed by the database so texts never travel."""
    r = Response.__table__.c
    stmt = _scoped(select(r.id, func.length(r.text)), r.prompt_id, snapshot_id)
    return {int(i): int(n or 0) for i, n in conn.execute(stmt)}


def _load_splits(conn: Connection, snapshot_id: int) -> dict[str, np.ndarray]:
    s = SnapshotItem.__table__.c
    rows = conn.execute(select(s.split, s.prompt_id).where(s.snapshot_id == snapshot_id)).all()
    by_split: dict[str, set[int]] = {}
    for split, pid in rows:
        by_split.setdefault(str(split), set()).add(int(pid))
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in by_split.items()}


def load_audit_data(conn: Connection, snapshot_id: int | None = None) -> AuditData:
    """Everything the checks read, restricted to one snapshot's prompts when given.

    Raises PreflineError if the snapshot does not exist.
    """
    if snapshot_id is not None:
        found = conn.execute(select(Snapshot.id).where(Snapshot.id == snapshot_id)).first()
        if found is None:
            raise PreflineError(f"snapshot {snapshot_id} does not exist in this store",
                                field="--snapshot")
    fb = _load_feedback(conn, snapshot_id)
    a = Annotator.__table__.c
    ann_rows = conn.execute(select(a.id, a.name, a.kind).order_by(a.id)).all()
    position = {int(r[0]): i for i, r in enumerate(ann_rows)}
    annotator = np.fromiter((position[int(x)] for x in fb.pop("annotator_id")), np.int64,
                            fb["feedback_id"].shape[0])
    return AuditData(
        annotator=annotator, annotator_names=[str(r[1]) for r in ann_rows],
        annotator_kinds=[str(r[2]) for r in ann_rows], response_length=_load_lengths(conn, snapshot_id),
        **_load_prompts(conn, snapshot_id),
        splits=_load_splits(conn, snapshot_id) if snapshot_id is not None else {},
        snapshot_id=snapshot_id, **fb,
    )
