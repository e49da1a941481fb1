"""ORM model for per-user consent (issue 14, item 6); migration 0006 creates it.

Consent is a history, never updated in place: every change is a new row and the latest
row of a user (highest ``id``) is that user's consent now. Existing snapshots are frozen
and keep what they held; the next snapshot reads the latest row.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from prefline.store.models import PK, Base, utcnow

CONSENT_PURPOSES = ("training", "evaluation", "none")
"""``training`` allows training and evaluation; ``evaluation`` allows evaluation only;
``none`` allows neither (a revocation)."""


class Consent(Base):
    """One consent decision of one (pseudonymous) user."""

    __tablename__ = "consents"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    """One of :data:`CONSENT_PURPOSES`."""
    actor: Mapped[str | None] = mapped_column(String(200))
    """Who recorded it (``cli``, ``admin:<name>``)."""
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


__all__ = ["CONSENT_PURPOSES", "Consent"]
