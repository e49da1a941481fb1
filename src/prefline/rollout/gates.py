"""Gates: declarative rules over recorded evaluation results, checked before promotion.

A gate file (TOML) lists requirements, each ``<metric> <op> <rhs>`` where ``rhs`` is a
number, ``baseline`` or ``baseline ± number``::

    rules = [
      "judge_win_rate.ci_low >= 0.5",
      "kl <= 8",
      "length_ratio <= 1.3",
      "refusal.should_refuse >= baseline - 0.02",
      "reward.accuracy >= 0.6",
    ]

A rule *holds* when its comparison is true; a rule that does not hold, or whose metric no
evaluation recorded, is a breach (a gate never passes on missing evidence). Metric names
come from the registered evaluations given to the check (:func:`metric_space`): a policy
evaluation's headline metrics at the top level plus ``judge_win_rate.ci_low|ci_high``,
``refusal.<slice>``, ``length_ratio``, ``distinct_1|2``; a reward-model evaluation's under
``reward.``; an audit report's under ``audit.``. ``baseline`` is the same metric on the
evaluation's baseline side (or on ``--baseline`` evaluations).

The result is recorded as an append-only ``gate.check`` audit-log row against the exact
content hash of the evaluated artifact; promotion out of ``candidate`` looks for it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prefline.audit.checks import OPS
from prefline.audit.stats import is_number
from prefline.base.config import read_file
from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.rollout.lifecycle import GATE_ACTION, artifact_hash, require
from prefline.store.db import audit, session_scope
from prefline.store.models import Artifact, ArtifactInput

_RULE = re.compile(r"^\s*([A-Za-z_][\w.:\-]*)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")
_RHS = re.compile(r"^(baseline)?\s*(?:([-+])?\s*([0-9.]+(?:[eE][-+]?\d+)?))?$")


@dataclass(frozen=True)
class GateRule:
    metric: str
    op: str
    value: float
    baseline: bool = False
    """True: the threshold is the baseline's value of ``metric`` plus ``value``."""
    text: str = ""


@dataclass(frozen=True)
class GateResult:
    artifact_id: int
    artifact_hash: str
    passed: bool
    breaches: tuple[str, ...]
    held: tuple[str, ...]
    evaluations: tuple[int, ...]
    gates_hash: str
    metrics: dict[str, float] = field(default_factory=dict)


def parse_rule(text: str, where: str) -> GateRule:
    m = _RULE.match(text)
    rhs = _RHS.match(m.group(3)) if m else None
    if m is None or rhs is None or not (rhs.group(1) or rhs.group(3)) or (
            rhs.group(2) and not rhs.group(1)) or (rhs.group(1) and rhs.group(3)
                                                   and not rhs.group(2)):
        raise PreflineError(f"{where}: cannot read rule {text!r}; expected <metric> <op> "
                            "<number|baseline|baseline ± number>, e.g. kl <= 8", field="rules")
    try:
        number = float(rhs.group(3)) if rhs.group(3) else 0.0
    except ValueError:
        raise PreflineError(f"{where}: {rhs.group(3)!r} in rule {text!r} is not a number",
                            field="rules") from None
    if rhs.group(2) == "-":
        number = -number
    return GateRule(m.group(1), m.group(2), number, bool(rhs.group(1)), text.strip())


def load_gates(path: str | Path) -> tuple[list[GateRule], str]:
    """The rules of a gate file and the file's content hash."""
    data = read_file(path)
    rules = data.get("rules")
    unknown = sorted(set(data) - {"rules"})
    if unknown:
        raise PreflineError(f"unknown key {unknown[0]!r} in the gate file; expected only "
                            "'rules'", path=str(path), field=unknown[0])
    if not isinstance(rules, list) or not rules or not all(isinstance(r, str) for r in rules):
        raise PreflineError("the gate file needs rules = [\"metric op value\", ...] (a "
                            "non-empty list of strings)", path=str(path), field="rules")
    parsed = [parse_rule(r, f"{path} rules[{i}]") for i, r in enumerate(rules)]
    return parsed, content_hash(rules)


def _numbers(prefix: str, values: dict[str, Any], out: dict[str, float]) -> None:
    for key, value in values.items():
        if is_number(value) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)


def _side(doc: dict[str, Any], side: str, out: dict[str, float]) -> None:
    stats = doc.get(side) or {}
    _numbers("refusal.", stats.get("refusal_rate") or {}, out)
    _numbers("", {k: stats.get(k) for k in ("distinct_1", "distinct_2", "mean_length_words")},
             out)


def metric_space(art: Artifact) -> tuple[dict[str, float], dict[str, float]]:
    """``(metrics, baseline metrics)`` of one evaluation artifact, as gate rules name them."""
    metrics = dict(art.metrics or {})
    own: dict[str, float] = {}
    base: dict[str, float] = {}
    if "judge_win_rate" not in metrics:  # a reward-model evaluation
        _numbers("reward.", metrics, own)
        return own, base
    _numbers("", metrics, own)
    ci = metrics.get("judge_win_rate_ci") or []
    if len(ci) == 2 and all(is_number(v) for v in ci):
        own["judge_win_rate.ci_low"], own["judge_win_rate.ci_high"] = map(float, ci)
    doc = _read_json(art.path)
    _side(doc, "policy", own)
    _side(doc, "baseline", base)
    if own.get("mean_length_words") and base.get("mean_length_words"):
        own["length_ratio"] = own["mean_length_words"] / base["mean_length_words"]
        base["length_ratio"] = 1.0
    return own, base


def audit_space(path: str | Path) -> dict[str, float]:
    """An audit report's JSON (``prefline audit --json``) as ``audit.<metric>``."""
    doc = _read_json(path, required=True)
    out: dict[str, float] = {}
    _numbers("audit.", doc.get("metrics") or {}, out)
    return out


def _read_json(path: str | Path, required: bool = False) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        if required:
            raise PreflineError(f"cannot read JSON ({exc})", path=str(p)) from None
        return {}
    return doc if isinstance(doc, dict) else {}


def judge(rules: list[GateRule], metrics: dict[str, float],
          baseline: dict[str, float]) -> tuple[list[str], list[str]]:
    """``(breaches, held)``: one sentence per rule."""
    breaches: list[str] = []
    held: list[str] = []
    for rule in rules:
        value = metrics.get(rule.metric)
        if value is None:
            breaches.append(f"{rule.text}: no evaluation recorded {rule.metric}")
            continue
        threshold = rule.value
        if rule.baseline:
            if rule.metric not in baseline:
                breaches.append(f"{rule.text}: no baseline value of {rule.metric}")
                continue
            threshold += baseline[rule.metric]
        line = f"{rule.text}: {rule.metric} = {value:.4g} (threshold {threshold:.4g})"
        (held if OPS[rule.op](value, threshold) else breaches).append(line)
    return breaches, held


def check(db: str | None, gates: str | Path, evals: list[int], *, actor: str,
          artifact_id: int | None = None, baselines: list[int] | None = None,
          audit_report: str | Path | None = None) -> GateResult:
    """Check the rules of ``gates`` against the evaluations and record the result."""
    rules, gates_hash = load_gates(gates)
    if not evals:
        raise PreflineError("give at least one evaluation (--eval ID)", field="eval")
    with session_scope(db) as s:
        metrics: dict[str, float] = {}
        base: dict[str, float] = {}
        for eid in evals:
            art = require(s, eid)
            if art.kind != "evaluation":
                raise PreflineError(f"artifact {eid} is a {art.kind}, not an evaluation",
                                    field="eval")
            own, side = metric_space(art)
            metrics.update(own)
            base.update(side)
        for bid in baselines or []:
            base.update(metric_space(require(s, bid))[0])
        if audit_report is not None:
            metrics.update(audit_space(audit_report))
        target = artifact_id if artifact_id is not None else _evaluated(s, evals)
        art = require(s, target)
        digest = artifact_hash(art.path)
        breaches, held = judge(rules, metrics, base)
        audit(s, actor, GATE_ACTION, f"artifact:{target}", artifact_hash=digest,
              gates_hash=gates_hash, gates_path=str(Path(gates).resolve()),
              evaluations=list(evals), passed=not breaches, breaches=breaches, held=held)
    return GateResult(target, digest, not breaches, tuple(breaches), tuple(held),
                      tuple(evals), gates_hash, metrics)


def _evaluated(s: Session, evals: list[int]) -> int:
    """The policy (or reward model) the first evaluation evaluated."""
    for role in ("policy", "reward_model"):
        found = s.scalar(select(ArtifactInput.input_artifact_id).where(
            ArtifactInput.artifact_id.in_(evals), ArtifactInput.role == role,
            ArtifactInput.input_artifact_id.isnot(None)).order_by(ArtifactInput.position))
        if found is not None:
            return int(found)
    raise PreflineError(f"evaluations {evals} name no registered policy or reward model; "
                        "give --artifact ID", field="artifact")


__all__ = ["GateResult", "GateRule", "audit_space", "check", "judge", "load_gates",
           "metric_space", "parse_rule"]
