"""ORM models for rollout: feature flags (arms of a served model) and served responses.

They share ``Base`` with ``store/models.py``; migration 0005 creates exactly these tables
(tests/store/test_migrations.py compares the two). Lifecycle changes and gate checks need
no table of their own: they are ``audit_log`` rows, append-only by trigger.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from prefline.store.models import PK, Base, utcnow


class RolloutFlag(Base):
    """One served model name (what clients put in ``model``) and its arms.

    ``production_id`` serves everyone outside the canary; ``candidate_id`` serves
    ``percent`` % of users (a sticky hash of their id) whose segment is allowed and not
    denied. ``previous_id`` is the production before the current one, restored when the
    current one is rolled back.
    """

    __tablename__ = "rollout_flags"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    production_id: Mapped[int | None] = mapped_column(ForeignKey("artifacts.id"))
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("artifacts.id"))
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("artifacts.id"))
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    allow_segments: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Only these segments may see the candidate (empty: every segment)."""
    deny_segments: Mapped[list[Any]] = mapped_column(JSON, default=list)
    guardrails: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Settings of :class:`prefline.rollout.telemetry.Guardrails` (alpha, min_feedback, ...)."""
    canary_started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ServedResponse(Base):
    """One chat completion served: which model version and arm, for whom, how fast.

    ``response_id`` is the ``responses`` row holding the text (None when generation
    failed, then ``error`` says why); it is the id the feedback API takes.
    """

    __tablename__ = "served_responses"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    response_id: Mapped[int | None] = mapped_column(ForeignKey("responses.id"), index=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    model_version: Mapped[str] = mapped_column(String(200))
    flag: Mapped[str] = mapped_column(String(100), index=True)
    arm: Mapped[str] = mapped_column(String(20))
    user_hash: Mapped[str] = mapped_column(String(64))
    """Pseudonymous: sha256 of the client's user id, never the id itself."""
    segment: Mapped[str | None] = mapped_column(String(100))
    segment_attrs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Declared segment attributes the request gave (body field ``segment_attrs``)."""
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


__all__ = ["RolloutFlag", "ServedResponse"]
