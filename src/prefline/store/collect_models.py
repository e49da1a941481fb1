"""ORM models for collection: users, sessions, API keys, campaigns and assignments.

They share ``Base`` with ``store/models.py`` so one metadata describes the whole store;
migration 0002 creates exactly these tables (a test compares the two). Labels themselves
go into the ``feedback`` table so snapshots and audits see UI labels and production
feedback alike; an assignment only points at the feedback row it produced.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from prefline.store.models import PK, Base, utcnow

USER_ROLES = ("admin", "annotator")
CAMPAIGN_KINDS = ("pairwise", "rating", "ranking")


class User(Base):
    """A person who logs into the web app; labels are stored under ``annotator_id``."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class UserSession(Base):
    """A login session. Only the SHA-256 of the cookie token is stored, never the token."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ApiKey(Base):
    """An ingest API key: looked up by its public ``prefix``, checked against ``key_hash``."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    rate_per_s: Mapped[float] = mapped_column(Float, default=50.0)
    burst: Mapped[int] = mapped_column(Integer, default=200)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Campaign(Base):
    """An annotation campaign: which items, which criteria, how many labels per item."""

    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    criteria: Mapped[list[Any]] = mapped_column(JSON)
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    blind: Mapped[bool] = mapped_column(Boolean, default=True)
    instructions: Mapped[str | None] = mapped_column(Text)
    selection: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CampaignItem(Base):
    """One unit of work: a prompt and the response ids to compare, rate or rank."""

    __tablename__ = "campaign_items"
    __table_args__ = (UniqueConstraint("campaign_id", "position"),)
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    response_ids: Mapped[list[Any]] = mapped_column(JSON)
    done_count: Mapped[int] = mapped_column(Integer, default=0)


class Assignment(Base):
    """An item handed to one user, with the order its responses were shown in."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("item_id", "user_id"),)
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"),
                                             index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("campaign_items.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    shown_order: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="assigned")
    feedback_id: Mapped[int | None] = mapped_column(ForeignKey("feedback.id"))
    assigned_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    """Why the annotator skipped this item (status ``skipped``); None otherwise."""


__all__ = [
    "ApiKey", "Assignment", "Campaign", "CampaignItem", "User", "UserSession", "USER_ROLES",
    "CAMPAIGN_KINDS",
]
