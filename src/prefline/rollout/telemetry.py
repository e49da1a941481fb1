"""Per-arm telemetry of a canary, with always-valid confidence intervals, and guardrails.

Rates (thumbs-up, regenerate, error) get a *confidence sequence*: an interval that holds
at every sample size at once with probability ≥ 1-α, so the dashboard and the guardrails
may look after every request without inflating the error rate (a fixed-n interval checked
continuously would eventually exclude the truth by chance). We use the two-sided normal
mixture boundary of Robbins (1970) in the form of Howard, Ramdas, McAuliffe & Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Annals of Statistics
49(2), 2021 (eq. (3.7), one-sided boundary applied at α/2 per side; observations in [0, 1]
are ½-sub-Gaussian, so the intrinsic time after n observations is v = n/4). ρ is tuned for
v = n_opt/4 with their closed-form approximation (as in the ``confseq`` package).

The difference of two arms is bounded by combining each arm's sequence at α/2 (a union
bound): ``[low_c − high_p, high_c − low_p]`` holds for all n at once with probability
≥ 1-α. Latency gets plain p50/p95 (no interval).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from prefline.base.errors import PreflineError
from prefline.rollout.actions import promote, rollback
from prefline.store.db import session_scope
from prefline.store.models import Feedback
from prefline.store.rollout_models import RolloutFlag, ServedResponse

ARMS = ("production", "candidate")


def cs_radius(n: int, alpha: float, n_opt: int = 100) -> float:
    """Half-width of the always-valid interval for the mean of ``n`` values in [0, 1]."""
    if n <= 0:
        return math.inf
    a = alpha / 2  # one side each
    log_term = 2 * math.log(1 / a)
    rho = (n_opt / 4) / (log_term + math.log(1 + log_term))
    v = n / 4
    return math.sqrt((v + rho) * math.log((v + rho) / (rho * a * a))) / n


def rate(values: list[float], alpha: float) -> dict[str, Any]:
    """``{"mean", "low", "high", "n"}`` (None when there is no observation)."""
    n = len(values)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(np.mean(values))
    r = cs_radius(n, alpha)
    return {"mean": mean, "low": max(0.0, mean - r), "high": min(1.0, mean + r), "n": n}


def trajectory(values: list[float], alpha: float, points: int = 24) -> list[dict[str, Any]]:
    """The running rate and its always-valid interval at up to ``points`` sample sizes
    (the dashboard's plot): because the interval holds at every n at once, the whole band
    may be read, not just its last point."""
    out = []
    n_total = len(values)
    for k in sorted({max(1, round(n_total * (i + 1) / points)) for i in range(points)}):
        if k <= n_total:
            out.append(rate(values[:k], alpha))
    return out


def difference(cand: dict[str, Any], prod: dict[str, Any]) -> tuple[float, float] | None:
    """Always-valid bounds on candidate − production (each arm's interval at α/2)."""
    if not cand["n"] or not prod["n"]:
        return None
    return cand["low"] - prod["high"], cand["high"] - prod["low"]


@dataclass(frozen=True)
class Guardrails:
    """When a canary is rolled back or promoted automatically."""

    alpha: float = 0.05
    """Error level of the always-valid intervals (over the whole canary, all looks)."""
    min_feedback: int = 20
    """No decision before each arm has this many thumbs (or served requests for errors)."""
    auto_rollback: bool = True
    auto_promote: bool = False
    """Promote the candidate when it is better on thumbs-up and not worse on any guardrail."""
    every: int = 5
    """Evaluate after every this many served requests of the flag."""

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise PreflineError(f"alpha must be in (0, 1), got {self.alpha}", field="alpha")
        if self.min_feedback < 1 or self.every < 1:
            raise PreflineError("min_feedback and every must be >= 1", field="min_feedback")

    @classmethod
    def of(cls, values: dict[str, Any] | None) -> Guardrails:
        known = {k: v for k, v in (values or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _arm_rows(db: str | Engine | None, flag: str) -> tuple[RolloutFlag | None, dict[str, Any]]:
    with session_scope(db) as s:
        row = s.scalar(select(RolloutFlag).where(RolloutFlag.name == flag))
        if row is None:
            return None, {}
        s.expunge(row)
        ids = {arm: aid for arm, aid in zip(ARMS, (row.production_id, row.candidate_id),
                                            strict=True) if aid is not None}
        where = [ServedResponse.flag == flag,
                 ServedResponse.artifact_id.in_(list(ids.values()) or [-1])]
        if row.canary_started_at is not None:
            where.append(ServedResponse.created_at >= row.canary_started_at)
        served = s.execute(select(ServedResponse.artifact_id, ServedResponse.response_id,
                                  ServedResponse.latency_ms, ServedResponse.error)
                           .where(*where).order_by(ServedResponse.id)).all()
        rids = [r.response_id for r in served if r.response_id is not None]
        fb = s.execute(select(Feedback.response_id, Feedback.kind, Feedback.payload)
                       .where(Feedback.response_id.in_(rids or [-1]),
                              Feedback.kind.in_(("binary", "implicit")))
                       .order_by(Feedback.id)).all() if rids else []
    return row, {"ids": ids, "served": served, "feedback": fb}


def arm_metrics(db: str | Engine | None, flag: str, alpha: float | None = None
                ) -> dict[str, Any]:
    """Per arm: served, thumbs_up, regenerate, error (rates with intervals), latency."""
    row, data = _arm_rows(db, flag)
    if row is None:
        return {}
    alpha = alpha if alpha is not None else Guardrails.of(row.guardrails).alpha
    arm_of = {aid: arm for arm, aid in data["ids"].items()}
    resp_arm = {r.response_id: arm_of[r.artifact_id] for r in data["served"]
                if r.response_id is not None}
    out: dict[str, Any] = {}
    for arm, aid in data["ids"].items():
        served = [r for r in data["served"] if r.artifact_id == aid]
        ok = [r for r in served if r.error is None]
        thumbs = [1.0 if (p or {}).get("value") else 0.0 for rid, kind, p in data["feedback"]
                  if kind == "binary" and resp_arm.get(rid) == arm]
        regen_ids = {rid for rid, kind, p in data["feedback"]
                     if kind == "implicit" and (p or {}).get("signal") == "regenerate"}
        lat = [r.latency_ms for r in ok]
        out[arm] = {
            "artifact_id": aid, "served": len(served),
            "thumbs_up": rate(thumbs, alpha),
            "thumbs_up_path": trajectory(thumbs, alpha),
            "regenerate": rate([1.0 if r.response_id in regen_ids else 0.0 for r in ok], alpha),
            "error": rate([0.0 if r.error is None else 1.0 for r in served], alpha),
            "latency_ms": {"p50": float(np.percentile(lat, 50)) if lat else None,
                           "p95": float(np.percentile(lat, 95)) if lat else None},
        }
    return out


def decide(metrics: dict[str, Any], rails: Guardrails) -> tuple[str, str]:
    """``("rollback"|"promote"|"continue", one-sentence reason)`` for a canary."""
    cand, prod = metrics.get("candidate"), metrics.get("production")
    if cand is None or prod is None:
        return "continue", "no canary running against a production arm"
    worse = []
    for name, higher_is_better in (("thumbs_up", True), ("regenerate", False), ("error", False)):
        c, p = cand[name], prod[name]
        need = rails.min_feedback
        if c["n"] < need or p["n"] < need:
            continue
        low, high = difference(c, p) or (-math.inf, math.inf)
        if (high < 0) if higher_is_better else (low > 0):
            worse.append(f"{name} {c['mean']:.3f} vs {p['mean']:.3f} "
                         f"(difference in [{low:.3f}, {high:.3f}])")
    if worse:
        return "rollback", "candidate significantly worse: " + "; ".join(worse)
    c, p = cand["thumbs_up"], prod["thumbs_up"]
    if min(c["n"], p["n"]) >= rails.min_feedback:
        low, high = difference(c, p) or (-math.inf, math.inf)
        if low > 0:
            return "promote", (f"candidate better on thumbs_up {c['mean']:.3f} vs "
                               f"{p['mean']:.3f} (difference in [{low:.3f}, {high:.3f}]) and "
                               "not significantly worse on any guardrail")
    return "continue", "no significant difference yet"


def guard(db: str | Engine | None, flag: str, actor: str = "guardrail") -> dict[str, Any]:
    """Evaluate a flag's canary and act (roll back / promote) as its guardrails allow."""
    metrics = arm_metrics(db, flag)
    with session_scope(db) as s:
        row = s.scalar(select(RolloutFlag).where(RolloutFlag.name == flag))
        rails = Guardrails.of(row.guardrails if row else None)
        cand_id = row.candidate_id if row else None
    action, reason = decide(metrics, rails)
    done = None
    if cand_id is not None and action == "rollback" and rails.auto_rollback:
        done = rollback(db, cand_id, actor=actor, reason=reason)
    elif cand_id is not None and action == "promote" and rails.auto_promote:
        done = promote(db, cand_id, actor=actor, reason=reason, to="production")
    return {"flag": flag, "decision": action, "reason": reason, "done": done,
            "metrics": metrics}


__all__ = ["ARMS", "Guardrails", "arm_metrics", "cs_radius", "decide", "difference", "guard",
           "rate", "trajectory"]
