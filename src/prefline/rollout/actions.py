"""Promote, roll back and re-route: the only code that changes a lifecycle status or a flag.

Each function is one transaction: the artifact statuses, the flag and the audit-log rows
change together or not at all. The CLI, the admin API and the guardrails all call these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from prefline.base.errors import PreflineError
from prefline.rollout import lifecycle
from prefline.rollout.flags import find, flag_of, get_or_create
from prefline.store.db import audit, session_scope
from prefline.store.models import Artifact, utcnow
from prefline.store.rollout_models import RolloutFlag

DEFAULT_FLAG = "default"
DEFAULT_PERCENT = 5.0


def promote(db: str | Engine | None, artifact_id: int, *, actor: str, reason: str,
            to: str | None = None, flag: str | None = None,
            percent: float | None = None) -> dict[str, Any]:
    """Move an artifact one step on (or to ``to``); returns ``{"id", "old", "new", "flag"}``.

    To canary it joins ``flag`` as the candidate arm with ``percent`` % of traffic; to
    production it replaces the flag's production arm, which is retired (and remembered,
    so that rolling the new one back restores it).
    """
    _check_reason(reason)
    with session_scope(db) as s:
        art = lifecycle.require(s, artifact_id)
        old = lifecycle.status_of(art)
        target = lifecycle.check_promotion(s, art, to)
        name = None
        if target == "canary":
            name = _start_canary(s, art, flag or DEFAULT_FLAG, percent, actor)
        elif target == "production":
            name = _make_production(s, art, old, flag, actor, reason)
        lifecycle.set_status(s, art, target, actor, reason, flag=name)
        return {"id": art.id, "old": old, "new": target, "flag": name}


def _start_canary(s: Session, art: Artifact, name: str, percent: float | None,
                  actor: str) -> str:
    pct = DEFAULT_PERCENT if percent is None else percent
    _check_percent(pct)
    row = get_or_create(s, name, actor)
    if row.candidate_id not in (None, art.id):
        raise PreflineError(f"flag {name!r} already runs a canary of artifact "
                            f"{row.candidate_id}; promote or roll that back first", field="flag")
    row.candidate_id, row.percent, row.canary_started_at = art.id, pct, utcnow()
    _touched(row, actor)
    return name


def _make_production(s: Session, art: Artifact, old: str, flag: str | None, actor: str,
                     reason: str) -> str:
    row = flag_of(s, art.id) if old == "canary" else None
    if row is None:
        row = get_or_create(s, flag or DEFAULT_FLAG, actor)
        if old == "staging" and row.production_id is not None:
            raise PreflineError(f"flag {row.name!r} already has production artifact "
                                f"{row.production_id}; a staging artifact must go through "
                                "canary first", field="to")
    if row.production_id is not None and row.production_id != art.id:
        prev = lifecycle.require(s, row.production_id)
        lifecycle.set_status(s, prev, "retired", actor, f"replaced by artifact {art.id}: "
                             f"{reason}", flag=row.name)
        row.previous_id = prev.id
    row.production_id = art.id
    if row.candidate_id == art.id:
        row.candidate_id, row.percent, row.canary_started_at = None, 0.0, None
    _touched(row, actor)
    return row.name


def rollback(db: str | Engine | None, artifact_id: int, *, actor: str,
             reason: str) -> dict[str, Any]:
    """Take an artifact out of service (status ``rolled_back``).

    A canary stops serving at once; a production artifact hands its flag back to the
    production before it (refused when there is none: nothing would be left to serve).
    """
    _check_reason(reason)
    with session_scope(db) as s:
        art = lifecycle.require(s, artifact_id)
        old = lifecycle.status_of(art)
        lifecycle.check_rollback(art)
        row = flag_of(s, art.id)
        restored = None
        if row is not None and row.candidate_id == art.id:
            row.candidate_id, row.percent, row.canary_started_at = None, 0.0, None
            _touched(row, actor)
        elif row is not None and row.production_id == art.id:
            if row.previous_id is None:
                raise PreflineError(f"artifact {art.id} is the only production of flag "
                                    f"{row.name!r}; promote a replacement instead",
                                    field="artifact_id")
            prev = lifecycle.require(s, row.previous_id)
            lifecycle.set_status(s, prev, "production", actor,
                                 f"restored by rollback of artifact {art.id}: {reason}",
                                 flag=row.name)
            row.production_id, row.previous_id, restored = prev.id, None, prev.id
            _touched(row, actor)
        lifecycle.set_status(s, art, "rolled_back", actor, reason,
                             flag=row.name if row else None)
        return {"id": art.id, "old": old, "new": "rolled_back",
                "flag": row.name if row else None, "restored": restored}


def set_traffic(db: str | Engine | None, name: str, *, actor: str, reason: str,
                percent: float | None = None, allow: Sequence[str] | None = None,
                deny: Sequence[str] | None = None,
                guardrails: dict[str, Any] | None = None) -> dict[str, Any]:
    """Change a flag's canary share, segments or guardrail settings (takes effect within
    the servers' flag-cache interval, no restart)."""
    _check_reason(reason)
    with session_scope(db) as s:
        row = find(s, name)
        changes: dict[str, Any] = {}
        if percent is not None:
            _check_percent(percent)
            row.percent = changes["percent"] = float(percent)
        if allow is not None:
            row.allow_segments = changes["allow_segments"] = [str(x) for x in allow]
        if deny is not None:
            row.deny_segments = changes["deny_segments"] = [str(x) for x in deny]
        if guardrails is not None:
            row.guardrails = changes["guardrails"] = dict(guardrails)
        _touched(row, actor)
        audit(s, actor, "flag.update", f"flag:{name}", reason=reason, **changes)
        return {"flag": name, **changes}


def status(db: str | Engine | None) -> list[dict[str, Any]]:
    """Every flag with its arms (artifact id, status, path)."""
    with session_scope(db) as s:
        out = []
        for row in s.scalars(select(RolloutFlag).order_by(RolloutFlag.name)):
            arms = {}
            for arm, aid in (("production", row.production_id),
                             ("candidate", row.candidate_id)):
                art = s.get(Artifact, aid) if aid is not None else None
                arms[arm] = None if art is None else {
                    "id": art.id, "status": lifecycle.status_of(art), "path": art.path,
                    "contains_forgotten_data": art.contains_forgotten_data}
            out.append({"flag": row.name, "percent": row.percent, **arms,
                        "previous_id": row.previous_id,
                        "allow_segments": list(row.allow_segments or []),
                        "deny_segments": list(row.deny_segments or []),
                        "guardrails": dict(row.guardrails or {}),
                        "updated_by": row.updated_by, "updated_at": row.updated_at})
        return out


def _touched(row: RolloutFlag, actor: str) -> None:
    row.updated_by, row.updated_at = actor, utcnow()


def _check_percent(pct: float) -> None:
    if not 0.0 <= pct <= 100.0:
        raise PreflineError(f"percent must be between 0 and 100, got {pct:g}", field="percent")


def _check_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise PreflineError("a reason is required for the audit log", field="reason")


__all__ = ["DEFAULT_FLAG", "promote", "rollback", "set_traffic", "status"]
