"""Per-user consent (issue 14, item 6): record it, read the latest, screen snapshot rows.

A user's consent is the latest ``consents`` row (highest id); earlier rows stay as the
history. ``training`` consent covers training and evaluation, ``evaluation`` covers
evaluation only, ``none`` covers nothing (a revocation). A snapshot built for a purpose
keeps only feedback whose user consented to that purpose; feedback without a user id is
tied to no person and goes in unless ``require_consent`` is set. Snapshots are frozen: a
later change of consent never alters a stored snapshot, it only screens the next one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from prefline.base.errors import PreflineError
from prefline.formats.records import Where, user_id
from prefline.store.consent_models import CONSENT_PURPOSES, Consent
from prefline.store.models import AuditLog, utcnow

SNAPSHOT_PURPOSES = ("training", "evaluation")
"""What a snapshot can be for."""
COVERS = {"training": ("training",), "evaluation": ("training", "evaluation")}
"""Per snapshot purpose, the consents that allow it."""

NO_CONSENT = "no consent recorded"
REVOKED = "consent none"
EVALUATION_ONLY = "consent for evaluation only"
NO_USER = "no user id (require_consent)"


def check_purpose(purpose: str, allowed: tuple[str, ...] = CONSENT_PURPOSES,
                  field: str = "purpose") -> str:
    """``purpose`` itself, or PreflineError naming the allowed ones."""
    if purpose not in allowed:
        raise PreflineError(f"unknown purpose {purpose!r}; expected one of {', '.join(allowed)}",
                            field=field)
    return purpose


@dataclasses.dataclass(frozen=True)
class ConsentEntry:
    """One recorded decision."""

    user: str
    purpose: str
    actor: str | None
    created_at: dt.datetime


def set_consent(engine: Engine, user: str, purpose: str, *, actor: str = "cli") -> ConsentEntry:
    """Record ``user``'s consent now (a new history row; it wins over earlier ones) and an
    audit entry. Raises PreflineError on an unknown purpose or a user id that is not a
    pseudonymous id."""
    user = user_id(user, Where("consent"), "user") or ""
    check_purpose(purpose)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(Consent.__table__.insert().values(  # type: ignore[attr-defined]
            user_id=user, purpose=purpose, actor=actor, created_at=now))
        conn.execute(AuditLog.__table__.insert().values(  # type: ignore[attr-defined]
            actor=actor, action="consent.set", target=f"user:{user}", created_at=now,
            details={"purpose": purpose}))
    return ConsentEntry(user, purpose, actor, now)


def consent_history(engine: Engine, user: str) -> list[ConsentEntry]:
    """Every decision of ``user``, oldest first (the last one is in force)."""
    with engine.connect() as conn:
        rows = conn.execute(select(Consent.user_id, Consent.purpose, Consent.actor,
                                   Consent.created_at).where(Consent.user_id == user)
                            .order_by(Consent.id)).all()
    return [ConsentEntry(*r) for r in rows]


def latest_consents(conn: Connection, users: set[str]) -> dict[str, str]:
    """``{user: purpose in force}`` for those of ``users`` with any consent row."""
    found: dict[str, str] = {}
    ordered = sorted(users)
    for start in range(0, len(ordered), 500):  # well below SQLite's parameter limit
        chunk = ordered[start:start + 500]
        q = select(Consent.user_id, Consent.purpose).where(Consent.user_id.in_(chunk)) \
            .order_by(Consent.id)
        for user, purpose in conn.execute(q).tuples():
            found[user] = purpose  # in id order: the latest row wins
    return found


def _reason(user: str | None, consent: dict[str, str], purpose: str,
            require_consent: bool) -> str | None:
    """Why a row of ``user`` is left out of a ``purpose`` snapshot (None: it goes in)."""
    if user is None:
        return NO_USER if require_consent else None
    given = consent.get(user)
    if given in COVERS[purpose]:
        return None
    if given is None:
        return NO_CONSENT
    return REVOKED if given == "none" else EVALUATION_ONLY


def screen(conn: Connection, rows: list[Any], purpose: str,
           require_consent: bool) -> tuple[list[Any], dict[str, dict[str, int]]]:
    """(rows allowed for ``purpose``, exclusions ``{"records": {reason: n}, "users":
    {reason: n}}``); rows need a ``user_id`` attribute."""
    check_purpose(purpose, SNAPSHOT_PURPOSES)
    consent = latest_consents(conn, {r.user_id for r in rows if r.user_id is not None})
    kept: list[Any] = []
    records: Counter[str] = Counter()
    users: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        why = _reason(r.user_id, consent, purpose, require_consent)
        if why is None:
            kept.append(r)
            continue
        records[why] += 1
        if r.user_id is not None:
            users[why].add(r.user_id)
    excluded = {"records": dict(sorted(records.items())),
                "users": {why: len(u) for why, u in sorted(users.items())}}
    return kept, excluded
