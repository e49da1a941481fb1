"""ORM models: the design.md data model.

Every table is created by an Alembic migration (``store/migrations``), never by
``create_all``; a test migrates an empty database and compares it with these models.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

FEEDBACK_KINDS = ("pairwise", "ranking", "rating", "binary", "implicit")
PAIRWISE_CHOICES = ("a", "b", "tie", "both_bad")
ANNOTATOR_KINDS = ("human", "ai_judge", "implicit")
IMPLICIT_SIGNALS = ("click", "copy", "dwell_ms", "regenerate", "edit")

# BigInteger primary keys that are still INTEGER PRIMARY KEY (rowid) on SQLite.
PK = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Prompt(Base):
    """A prompt: plain text or a list of chat messages ``[{role, content}, ...]``."""

    __tablename__ = "prompts"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    text: Mapped[str | None] = mapped_column(Text)
    messages: Mapped[list[Any] | None] = mapped_column(JSON)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    responses: Mapped[list[Response]] = relationship(back_populates="prompt")


class Response(Base):
    """One model output for a prompt, with the model and parameters that produced it."""

    __tablename__ = "responses"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="RESTRICT"), index=True)
    text: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(300))
    model_version: Mapped[str | None] = mapped_column(String(200))
    gen_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    prompt: Mapped[Prompt] = relationship(back_populates="responses")


class Annotator(Base):
    """Who gave feedback: a person, an AI judge (with its full config) or implicit signals."""

    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    role: Mapped[str | None] = mapped_column(String(50))
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Feedback(Base):
    """One judgment. ``payload`` holds the kind-specific part:

    - pairwise: ``{"choice": "a"|"b"|"tie"|"both_bad", "strength": float|None}``
      over ``response_a_id``/``response_b_id``;
    - ranking: ``{"order": [response_id, ...]}`` best first;
    - rating: ``{"scores": {criterion: number}}`` on ``response_id``;
    - binary: ``{"value": bool}`` (thumbs up/down, or KTO desirable) on ``response_id``;
    - implicit: ``{"signal": one of IMPLICIT_SIGNALS, "value": number}`` on ``response_id``.
    """

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    response_a_id: Mapped[int | None] = mapped_column(ForeignKey("responses.id"))
    response_b_id: Mapped[int | None] = mapped_column(ForeignKey("responses.id"))
    response_id: Mapped[int | None] = mapped_column(ForeignKey("responses.id"))
    choice: Mapped[str | None] = mapped_column(String(20))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    rationale: Mapped[str | None] = mapped_column(Text)
    shown_left_id: Mapped[int | None] = mapped_column(ForeignKey("responses.id"))
    time_spent_ms: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    """Store-made key of an imported, judged or UI label (unique): re-writing it adds nothing."""
    source: Mapped[str | None] = mapped_column(String(200), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    """The ingest API key that wrote this event (None for imports, judges and the UI)."""
    api_idempotency_key: Mapped[str | None] = mapped_column(String(200))
    """The key an API client gave; unique per ``api_key_id`` (two keys never collide)."""
    body_hash: Mapped[str | None] = mapped_column(String(64))
    """sha256 of the event as sent (canonical JSON): a retry with another body is a conflict."""
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("feedback.id"), index=True)
    """The earlier label this one replaces (an annotator's undo/edit); both rows are kept."""
    user_id: Mapped[str | None] = mapped_column(String(200), index=True)
    """Pseudonymous id of the end user the judgment is about (never an e-mail or a name)."""
    segment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Declared segment attributes of that user, ``{key: value}`` strings (e.g. style)."""

    annotator: Mapped[Annotator] = relationship()
    prompt: Mapped[Prompt] = relationship()


class Snapshot(Base):
    """A frozen, content-hashed training set; its items live in ``snapshot_items``."""

    __tablename__ = "snapshots"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    recipe: Mapped[dict[str, Any]] = mapped_column(JSON)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    contains_forgotten_data: Mapped[bool] = mapped_column(Boolean, default=False,
                                                          server_default=false())
    """Items were removed because a user was forgotten or their feedback expired
    (``prefline users forget``, ``prefline store prune``): the content no longer matches
    ``content_hash``, and what was trained on it saw data the store no longer holds."""


class SnapshotName(Base):
    """A name that finds a snapshot. Names are unique; one snapshot may have several (a name
    given to a content-identical snapshot aliases it). ``snapshots.name`` keeps the name the
    snapshot was first created under, for display."""

    __tablename__ = "snapshot_names"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id", ondelete="CASCADE"),
                                             index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SnapshotItem(Base):
    __tablename__ = "snapshot_items"
    __table_args__ = (UniqueConstraint("snapshot_id", "position"),)
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(10))
    kind: Mapped[str] = mapped_column(String(20))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class Artifact(Base):
    """A trained model, evaluation or report: kind, path, config, code version, metrics.

    Its lineage is a graph: every input (snapshot, base model, reward model, judge, previous
    policy, ...) is one :class:`ArtifactInput` row.
    """

    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(50), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    snapshot_hash: Mapped[str | None] = mapped_column(String(64))
    """Content hash of the training data (a snapshot's hash, or a data file's sha256)."""
    code_version: Mapped[str | None] = mapped_column(String(100))
    """``<version>+<commit>``, with ``.dirty-<diff hash>`` when the tree had changes."""
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(30), default="registered")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    contains_forgotten_data: Mapped[bool] = mapped_column(Boolean, default=False,
                                                          server_default=false())
    """Its lineage (followed through every input) includes a snapshot that held data since
    deleted by ``prefline users forget`` or ``prefline store prune``."""


class ArtifactInput(Base):
    """One typed input of an artifact: another artifact, a snapshot, or a ref string
    (model path or hub id, judge spec, file hash). ``role`` is one of
    ``prefline.base.stage.INPUT_ROLES``; ``position`` keeps the order they were given in."""

    __tablename__ = "artifact_inputs"
    __table_args__ = (UniqueConstraint("artifact_id", "position"),)
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(40))
    # No cascade: an artifact that others were built from cannot vanish from under them.
    input_artifact_id: Mapped[int | None] = mapped_column(ForeignKey("artifacts.id"), index=True)
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id"), index=True)
    ref: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)


class AuditLog(Base):
    """Append-only record of who did what; DELETE is refused by triggers, and UPDATE too
    except a redaction (see ``redacted_at``)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(String(300))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    redacted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    """When a forgotten user's id was blanked out of this row: the one UPDATE the triggers
    allow (it must set this; id, action and time stay), so erasure never deletes history."""


Index("ix_feedback_pair", Feedback.prompt_id, Feedback.response_a_id, Feedback.response_b_id)
# A unique index, not a table constraint: SQLite adds it without rebuilding ``feedback``.
Index("uq_feedback_api_idempotency", Feedback.api_key_id, Feedback.api_idempotency_key,
      unique=True)
Index("ix_snapshot_items_snapshot", SnapshotItem.snapshot_id, SnapshotItem.split)

__all__ = [
    "Base", "Prompt", "Response", "Annotator", "Feedback", "Snapshot", "SnapshotItem",
    "SnapshotName", "Artifact", "ArtifactInput", "AuditLog",
]
