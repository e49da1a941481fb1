"""``--fail-on`` rules: thresholds on the audit's headline metrics, for use in pipelines.

A rule is ``<metric><op><number>`` with op one of ``> < >= <= == !=``; rules are separated
by commas, e.g. ``position_bias>0.6,alpha<0.4,duplicates>0,leakage>0``. A rule *breaches*
when its comparison is true. A metric that is "not defined" on this data (e.g. α with one
annotator) cannot breach; it is reported as not evaluated, with the reason.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefline.audit.stats import is_number
from prefline.base.errors import PreflineError

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}
_RULE = re.compile(r"^\s*([A-Za-z_][\w.:\-]*)\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")

METRIC_HELP = {
    "position_bias": "share of decisive pairwise labels won by the left-shown response",
    "length_bias": "share of unequal-length decisive pairs won by the longer response",
    "chosen_longer": "share of decisive pairs whose chosen response is longer",
    "alpha": "Krippendorff's alpha of pairwise labels (else the lowest over question types)",
    "raw_agreement": "share of agreeing annotator pairs (same question type as alpha)",
    "kappa": "mean Cohen's kappa over annotator pairs (same question type as alpha)",
    "tie_rate": "share of pairwise labels that are ties",
    "both_bad_rate": "share of pairwise labels that are both_bad",
    "cycles": "number of intransitive 3-cycles in consensus preferences",
    "duplicates": "prompts that repeat another prompt (exact or near)",
    "exact_duplicates": "prompts whose normalised text repeats another's",
    "near_duplicates": "pairs of distinct prompts above the near-duplicate threshold",
    "opening_duplicates": "distinct conversations that open with the same user message",
    "leakage": "held-out prompts of the snapshot that also occur in train",
    "opening_leakage": "held-out conversations opening with a train conversation's user message",
    "fast_share": "share of timed human labels that were suspiciously fast",
    "fast_annotations": "number of suspiciously fast human labels",
    "outliers": "annotators flagged for low agreement with consensus",
    "judge_agreement": "agreement of AI judges with the human majority",
}


@dataclass(frozen=True)
class Rule:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


def parse_rules(text: str, known: set[str] | None = None) -> list[Rule]:
    """Parse ``"a>0.6,b<0.4"``; an unknown metric or a malformed rule is a PreflineError."""
    rules = []
    for part in (p for p in text.split(",") if p.strip()):
        m = _RULE.match(part)
        if m is None:
            raise PreflineError(f"cannot read rule {part.strip()!r}: expected <metric><op><number>, "
                                "e.g. position_bias>0.6", field="fail_on")
        metric = m.group(1)
        names = known if known is not None else set(METRIC_HELP)
        if metric not in names and not metric.startswith("alpha."):
            raise PreflineError(f"unknown metric {metric!r} in rule {part.strip()!r}; known: "
                                + ", ".join(sorted(names)), field="fail_on")
        rules.append(Rule(metric, m.group(2), float(m.group(3))))
    if not rules:
        raise PreflineError("no rules given", field="fail_on")
    return rules


def evaluate(rules: list[Rule], metrics: dict[str, Any]) -> dict[str, Any]:
    """``{"breached": [...], "passed": [...], "not_evaluated": [{"rule", "reason"}]}``."""
    out: dict[str, Any] = {"breached": [], "passed": [], "not_evaluated": []}
    for rule in rules:
        value = metrics.get(rule.metric, f"not defined: no {rule.metric} in this audit")
        if not is_number(value):
            out["not_evaluated"].append({"rule": str(rule), "reason": str(value)})
        elif OPS[rule.op](float(value), rule.threshold):
            out["breached"].append(f"{rule} (value {value:g})")
        else:
            out["passed"].append(f"{rule} (value {value:g})")
    return out
