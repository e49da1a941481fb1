"""Forgetting a user: ``prefline users forget USER`` and the admin API's
``POST /api/admin/users/{user}/forget``.

A user is found by every way the store records one: ``feedback.user_id`` (imports and the
ingest API), the ingest API's per-user annotator ``api:<key>:<user>``, an annotator named
``USER`` (an import's ``annotator`` field, an app account's labels), the app account
``users.username``, ``consents.user_id`` and rollout's served responses (``user_hash`` is
the id's sha256). In one transaction :func:`forget_user`

- deletes the feedback (with its rationales), the served-response log rows, the consents,
  the app account with its sessions and assignments (skip reasons are free text), and via
  :func:`prefline.store.purge.purge` the snapshot items copied from that feedback and the
  prompts and responses nothing else uses;
- decides per prompt of the user's whether it is also someone else's (prompts are shared by
  content hash): another end user's feedback, a dataset import without user ids or a chat
  served to another user keeps it, with their rows on it. Otherwise labels made from it
  (annotators', judges', API events without a user) and campaign items showing it go too
  (:func:`_derived`): a copy of the text, or a judgment quoting it, must not outlive it;
- renames the user's annotator rows to ``forgotten:<random>`` (not deleted: ingest servers
  cache annotator ids, and a deleted id would fail their next insert);
- blanks the user id out of audit-log rows that name it (``user:alice``,
  ``admin:alice``), which migration 0007's triggers allow as a redaction, and out of kept
  rows' who-did-it columns and JSON (:data:`_NAMING_COLUMNS`: a per-user metric in an
  artifact, a snapshot filter, a prompt's context);
- flags every snapshot that lost items and every artifact built from one
  ``contains_forgotten_data``;
- appends a content-free tombstone to the audit log: who ran it, when, a salted slow hash
  of the user id (PBKDF2, random salt: :func:`was_forgotten` can answer "was this user
  forgotten?" for someone who knows the id, nobody can read it back) and row counts per
  table.

Files outside the database (exports, run folders, trained weights) are not touched: the
flags say which artifacts need retraining or deleting.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, delete, or_, select, update
from sqlalchemy.engine import Connection, Engine

from prefline.base.errors import PreflineError
from prefline.base.privacy import pseudonym
from prefline.base.stage import StageResult
from prefline.store.collect_models import (
    ApiKey,
    Assignment,
    Campaign,
    CampaignItem,
    User,
    UserSession,
)
from prefline.store.consent_models import Consent
from prefline.store.db import open_store
from prefline.store.models import (
    Annotator,
    Artifact,
    AuditLog,
    Feedback,
    Prompt,
    Response,
    Snapshot,
    utcnow,
)
from prefline.store.purge import Purged, chunks, fold_wal, purge, zero_deleted
from prefline.store.rollout_models import RolloutFlag, ServedResponse

FORGOTTEN = "[forgotten]"
"""What replaces a forgotten user's id in a kept row (audit log, ``created_by``, ...)."""
ACTION = "user.forget"
"""The tombstone's audit-log action."""
DERIVED_SOURCES = ("api:", "campaign:", "judge:")
"""Feedback sources whose rows without a user id were made from others' texts (API events,
annotators' and judges' labels); any other source without user ids is a dataset import."""
HASH_ITERATIONS = 200_000
"""PBKDF2-SHA256 rounds for the tombstone's user hash: slow, so guessing ids costs."""
# Characters that may be part of an id: a mention must not continue into one of them.
_ID_CHAR = r"[\w.@+\-]"


@dataclass(frozen=True)
class ForgetResult(StageResult):
    """What ``users forget`` removed; the user id itself appears nowhere in it."""

    tombstone_id: int
    """The audit-log row that records the erasure."""
    counts: dict[str, int]
    """Rows deleted (or, for annotators and audit_log, anonymised) per table."""
    snapshots: tuple[int, ...]
    """Snapshots that lost items, now ``contains_forgotten_data``."""
    artifacts: tuple[int, ...]
    """Artifacts built from those snapshots (transitively), now ``contains_forgotten_data``."""


@dataclass
class _Found:
    feedback: set[int] = field(default_factory=set)
    served: set[int] = field(default_factory=set)
    annotators: set[int] = field(default_factory=set)
    accounts: set[int] = field(default_factory=set)
    consents: set[int] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.feedback or self.served or self.annotators or self.accounts
                    or self.consents)


def api_escaped(user: str) -> str:
    """The user id as the ingest API's annotator name ``api:<key>:<user>`` holds it."""
    return user.replace("%", "%25").replace(":", "%3A")


def tombstone_hash(user: str, salt: str, iterations: int = HASH_ITERATIONS) -> str:
    return hashlib.pbkdf2_hmac("sha256", user.encode(), bytes.fromhex(salt), iterations).hex()


def _ids(conn: Connection, query: Any) -> set[int]:
    return {int(i) for (i,) in conn.execute(query)}


def _find(conn: Connection, user: str) -> _Found:
    found = _Found()
    for uid, aid in conn.execute(select(User.id, User.annotator_id).where(User.username == user)):
        found.accounts.add(int(uid))
        found.annotators.add(int(aid))
    api_name = ":" + api_escaped(user)
    for aid, name in conn.execute(select(Annotator.id, Annotator.name).where(or_(
            Annotator.name == user, Annotator.name.endswith(api_name, autoescape=True)))):
        if name == user or (name.startswith("api:") and name.rsplit(":", 1)[1] == api_name[1:]):
            found.annotators.add(int(aid))
    found.feedback = _ids(conn, select(Feedback.id).where(Feedback.user_id == user))
    for part in chunks(found.annotators):
        found.feedback |= _ids(conn, select(Feedback.id).where(Feedback.annotator_id.in_(part)))
    found.served = _ids(conn, select(ServedResponse.id).where(
        ServedResponse.user_hash == pseudonym(user)))
    found.consents = _ids(conn, select(Consent.id).where(Consent.user_id == user))
    return found


def _prompts_of(conn: Connection, found: _Found) -> set[int]:
    prompts: set[int] = set()
    for part in chunks(found.feedback):
        prompts |= _ids(conn, select(Feedback.prompt_id).where(Feedback.id.in_(part)))
    for part in chunks(found.served):
        prompts |= _ids(conn, select(Response.prompt_id).join(
            ServedResponse, ServedResponse.response_id == Response.id).where(
            ServedResponse.id.in_(part)))
    return prompts


def _derived(conn: Connection, found: _Found) -> tuple[set[int], set[int]]:
    """Feedback and campaign items made from the user's prompts that no one else's data
    holds: (feedback ids, campaign item ids).

    A prompt is also someone else's when another end user's feedback (a ``user_id``), an
    import without user ids (a dataset: its texts are no one person's) or a chat served to
    another user uses it; it is then kept, with everything on it. Otherwise annotators'
    labels, judges' labels and API events without a user on it were made from the user's
    text, and go with it, as do campaign items showing it.
    """
    prompts = _prompts_of(conn, found)
    rows = [r for part in chunks(prompts) for r in conn.execute(
        select(Feedback.id, Feedback.prompt_id, Feedback.user_id, Feedback.source)
        .where(Feedback.prompt_id.in_(part))) if int(r.id) not in found.feedback]
    kept = {int(r.prompt_id) for r in rows
            if r.user_id is not None or not (r.source or "").startswith(DERIVED_SOURCES)}
    for part in chunks(prompts):  # chats served to someone else
        kept |= {int(p) for p, sid in conn.execute(
            select(Response.prompt_id, ServedResponse.id).join(
                ServedResponse, ServedResponse.response_id == Response.id)
            .where(Response.prompt_id.in_(part))) if int(sid) not in found.served}
    orphaned = prompts - kept
    feedback = {int(r.id) for r in rows if int(r.prompt_id) in orphaned}
    items: set[int] = set()
    for part in chunks(orphaned):
        items |= _ids(conn, select(CampaignItem.id).where(CampaignItem.prompt_id.in_(part)))
    return feedback, items


def mentions(user: str) -> Callable[[Any], bool]:
    """A test: does a string (or any string inside a JSON value) name ``user`` as a whole
    id (``user:alice``, ``admin:alice``; not ``malice``)?"""
    pattern = re.compile("|".join(
        f"(?<!{_ID_CHAR}){re.escape(n)}(?!{_ID_CHAR})" for n in {user, api_escaped(user)}))

    def test(value: Any) -> bool:
        if isinstance(value, str):
            return pattern.search(value) is not None
        if isinstance(value, dict):
            return any(test(k) or test(v) for k, v in value.items())
        if isinstance(value, list | tuple):
            return any(test(v) for v in value)
        return False
    return test


def _scrub(value: Any, named: Callable[[Any], bool]) -> Any:
    """``value`` with every string (or key) that names the user replaced by FORGOTTEN."""
    if isinstance(value, dict):
        return {(FORGOTTEN if named(k) else k): _scrub(v, named) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, named) for v in value]
    return FORGOTTEN if named(value) else value


def _redact_audit(conn: Connection, user: str) -> int:
    """Blank the user out of audit rows that name them (a redaction the triggers allow)."""
    named = mentions(user)
    needles = {user, api_escaped(user), json.dumps(user)[1:-1]}  # JSON may escape non-ASCII
    columns = (AuditLog.actor, AuditLog.target, cast(AuditLog.details, Text))
    rows = conn.execute(select(AuditLog.id, AuditLog.actor, AuditLog.target, AuditLog.details)
                        .where(or_(*(c.contains(n, autoescape=True)
                                     for c in columns for n in needles)))).all()
    n = 0
    for row in rows:
        if not (named(row.actor) or named(row.target) or named(row.details)):
            continue  # a longer id that merely contains this one
        conn.execute(update(AuditLog).where(AuditLog.id == row.id).values(
            actor=_scrub(row.actor, named), target=_scrub(row.target, named),
            details=_scrub(row.details, named), redacted_at=utcnow()))
        n += 1
    return n


_NAMING_COLUMNS = (ApiKey.created_by, RolloutFlag.updated_by, Consent.actor, Artifact.config,
                   Artifact.metrics, Snapshot.recipe, Snapshot.stats, Prompt.context,
                   Campaign.selection)
"""Columns of rows that are kept which may name a user: who-did-it strings (an admin who
is forgotten) and JSON (a per-user metric, a filter, a prompt's context)."""


def _blank_mentions(conn: Connection, user: str) -> int:
    """Replace the user's id in kept rows' :data:`_NAMING_COLUMNS` by FORGOTTEN."""
    named, n = mentions(user), 0
    needles = {user, json.dumps(user)[1:-1]}
    for column in _NAMING_COLUMNS:
        table, text = column.class_, cast(column, Text)
        for rid, value in conn.execute(select(table.id, column).where(
                or_(*(text.contains(x, autoescape=True) for x in needles)))):
            if named(value):
                conn.execute(update(table).where(table.id == rid)
                             .values({column.key: _scrub(value, named)}))
                n += 1
    return n


def _drop_accounts(conn: Connection, found: _Found, out: Purged) -> None:
    """The app account, its sessions and open assignments; the annotator rows renamed."""
    for model, column, key in ((Assignment, Assignment.user_id, "assignments"),
                               (UserSession, UserSession.user_id, "sessions"),
                               (User, User.id, "users")):
        for part in chunks(found.accounts):
            out.counts[key] += conn.execute(delete(model).where(column.in_(part))).rowcount or 0
    for aid in sorted(found.annotators):
        conn.execute(update(Annotator).where(Annotator.id == aid).values(
            name=f"forgotten:{secrets.token_hex(8)}", config=None))
    out.counts["annotators"] += len(found.annotators)
    for part in chunks(found.consents):
        out.counts["consents"] += conn.execute(delete(Consent).where(Consent.id.in_(part))).rowcount or 0


def forget_user(db: str | Engine | None, user: str, *, actor: str = "cli") -> ForgetResult:
    """Delete or anonymise everything the store holds about ``user`` (module doc).

    Raises PreflineError, changing nothing, when the store holds nothing about the user.
    """
    if not user or not user.strip():
        raise PreflineError("expected a user id (the pseudonymous id feedback was stored "
                            "under, or an app username)", field="user")
    engine = db if isinstance(db, Engine) else open_store(db)
    with engine.begin() as conn:
        zero_deleted(conn)
        found = _find(conn, user)
        if found.empty():
            raise PreflineError(
                f"the store holds nothing about user {user!r} (searched feedback user ids, "
                "annotators, app users, consents and served responses); nothing was "
                "forgotten", field="user")
        derived, items = _derived(conn, found)
        out = purge(conn, found.feedback | derived, found.served, users={user},
                    campaign_items=items)
        _drop_accounts(conn, found, out)
        out.counts["audit_log"] += _redact_audit(conn, user)
        out.counts["mentions"] += _blank_mentions(conn, user)
        counts = {k: int(v) for k, v in sorted(out.counts.items())}
        salt = secrets.token_hex(16)
        tomb = conn.execute(AuditLog.__table__.insert().values(  # type: ignore[attr-defined]
            # _scrub: an administrator who forgets themself is not named here either.
            actor=_scrub(actor, mentions(user)), action=ACTION, target=None,
            created_at=utcnow(), details={
                "user_hash": tombstone_hash(user, salt), "salt": salt,
                "iterations": HASH_ITERATIONS, "counts": counts,
                "snapshots": sorted(out.snapshots), "artifacts": sorted(out.artifacts)},
        ).returning(AuditLog.id)).scalar_one()
    fold_wal(engine)
    return ForgetResult(tombstone_id=int(tomb), counts=counts, snapshots=tuple(sorted(out.snapshots)),
                        artifacts=tuple(sorted(out.artifacts)))


def was_forgotten(db: str | Engine | None, user: str) -> list[int]:
    """The tombstones (audit-log ids) recording that ``user`` was forgotten, oldest first."""
    engine = db if isinstance(db, Engine) else open_store(db)
    with engine.connect() as conn:
        rows = conn.execute(select(AuditLog.id, AuditLog.details).where(AuditLog.action == ACTION)
                            .order_by(AuditLog.id)).all()
    return [int(i) for i, d in rows if d and d.get("user_hash") == tombstone_hash(
        user, d["salt"], int(d.get("iterations", HASH_ITERATIONS)))]
