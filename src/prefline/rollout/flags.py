"""Feature flags: which artifact serves whom, read from the store at run time.

A user lands in the canary when a sticky hash of their id falls under the flag's
percentage and their segment is allowed (and not denied); the hash is the same in every
process and every restart, so a user sees one arm for the whole canary, and raising the
percentage only ever moves users from production to the candidate, never back.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from prefline.base.errors import PreflineError
from prefline.base.privacy import pseudonym  # re-exported: serving logs it
from prefline.store.models import utcnow
from prefline.store.rollout_models import RolloutFlag


@dataclass(frozen=True)
class FlagView:
    """A flag as the router reads it (a plain snapshot, safe to share across threads)."""

    name: str
    production_id: int | None
    candidate_id: int | None
    percent: float
    allow_segments: tuple[str, ...] = ()
    deny_segments: tuple[str, ...] = ()
    guardrails: dict[str, Any] = field(default_factory=dict)


def bucket(user: str, flag: str) -> float:
    """The user's sticky position in [0, 100): sha256 of ``flag/user``, salted by the flag
    so that two flags' canaries do not always pick the same users."""
    digest = hashlib.sha256(f"{flag}/{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0


def choose_arm(flag: FlagView, user: str, segment: str | None) -> tuple[str, int]:
    """``("candidate"|"production", artifact id)`` for this user on this flag."""
    if flag.candidate_id is not None and flag.percent > 0:
        seg = segment or ""
        allowed = not flag.allow_segments or seg in flag.allow_segments
        if allowed and seg not in flag.deny_segments and bucket(user, flag.name) < flag.percent:
            return "candidate", flag.candidate_id
    if flag.production_id is None:
        if flag.candidate_id is not None:  # nothing in production yet: the canary is all
            return "candidate", flag.candidate_id
        raise PreflineError(f"model {flag.name!r} has no production or canary artifact",
                            field="model")
    return "production", flag.production_id


def view(row: RolloutFlag) -> FlagView:
    return FlagView(row.name, row.production_id, row.candidate_id, float(row.percent),
                    tuple(row.allow_segments or ()), tuple(row.deny_segments or ()),
                    dict(row.guardrails or {}))


def get_or_create(s: Session, name: str, actor: str) -> RolloutFlag:
    if not name or len(name) > 100:
        raise PreflineError("a flag name must have 1-100 characters", field="flag")
    row = s.scalar(select(RolloutFlag).where(RolloutFlag.name == name))
    if row is None:
        row = RolloutFlag(name=name, percent=0.0, allow_segments=[], deny_segments=[],
                          guardrails={}, updated_by=actor, updated_at=utcnow())
        s.add(row)
        s.flush()
    return row


def find(s: Session, name: str) -> RolloutFlag:
    row = s.scalar(select(RolloutFlag).where(RolloutFlag.name == name))
    if row is None:
        raise PreflineError(f"no flag named {name!r}; promote a policy to canary or "
                            "production with --flag to create it", field="flag")
    return row


def flag_of(s: Session, artifact_id: int) -> RolloutFlag | None:
    """The flag serving this artifact in any arm (or remembering it as previous)."""
    return s.scalar(select(RolloutFlag).where(
        (RolloutFlag.candidate_id == artifact_id) | (RolloutFlag.production_id == artifact_id)))


class FlagCache:
    """Flags read from the store at most every ``ttl`` seconds, so a change made by
    another process (the CLI, another server) takes effect without a restart."""

    def __init__(self, engine: Engine, ttl: float = 0.5) -> None:
        self.engine, self.ttl = engine, ttl
        self._flags: dict[str, FlagView] = {}
        self._at = -1e9
        self._lock = threading.Lock()

    def get(self, name: str) -> FlagView | None:
        now = time.monotonic()
        with self._lock:
            fresh = now - self._at < self.ttl
        if not fresh:
            self.refresh()
        with self._lock:
            return self._flags.get(name)

    def refresh(self) -> None:
        with Session(self.engine) as s:
            flags = {r.name: view(r) for r in s.scalars(select(RolloutFlag))}
        with self._lock:
            self._flags, self._at = flags, time.monotonic()

    def names(self) -> list[str]:
        self.get("")
        with self._lock:
            return sorted(self._flags)


__all__ = ["FlagCache", "FlagView", "bucket", "choose_arm", "find", "flag_of",
           "get_or_create", "pseudonym", "view"]
