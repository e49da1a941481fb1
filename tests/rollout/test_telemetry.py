"""Always-valid intervals hold at every sample size at once; guardrail decisions."""

from __future__ import annotations

import numpy as np

from prefline.rollout.telemetry import Guardrails, cs_radius, decide, rate


def test_confidence_sequence_covers_at_every_look() -> None:
    """Watching after every observation: the share of runs whose interval *ever* excludes
    the true rate stays below alpha (a fixed-n 95% interval watched this way fails far
    more often)."""
    rng = np.random.default_rng(0)
    p, n, runs, alpha = 0.3, 600, 400, 0.05
    x = rng.random((runs, n)) < p
    means = np.cumsum(x, axis=1) / np.arange(1, n + 1)
    radius = np.array([cs_radius(k, alpha) for k in range(1, n + 1)])
    ever_missed = (np.abs(means - p) > radius).any(axis=1).mean()
    assert ever_missed <= alpha
    fixed = 1.96 * np.sqrt(p * (1 - p) / np.arange(1, n + 1))
    assert (np.abs(means - p) > fixed)[:, 20:].any(axis=1).mean() > 2 * alpha
    assert cs_radius(100, alpha) > cs_radius(1000, alpha) > 0


def _arm(thumbs: list[float], regen: list[float], errors: list[float]) -> dict[str, object]:
    return {"thumbs_up": rate(thumbs, 0.05), "regenerate": rate(regen, 0.05),
            "error": rate(errors, 0.05)}


def test_guardrails_roll_back_on_any_worse_metric_and_promote_only_when_clean() -> None:
    rails = Guardrails(min_feedback=20)
    good, bad = [1.0] * 160 + [0.0] * 40, [1.0] * 40 + [0.0] * 160
    zeros = [0.0] * 200
    prod = _arm(bad, zeros, zeros)
    action, reason = decide({"production": prod, "candidate": _arm(good, zeros, zeros)}, rails)
    assert action == "promote" and "thumbs_up" in reason
    # better on the primary metric but far more regenerations: rolled back, not promoted
    action, reason = decide({"production": prod, "candidate": _arm(good, good, zeros)}, rails)
    assert action == "rollback" and "regenerate" in reason
    action, reason = decide({"production": _arm(good, zeros, zeros),
                             "candidate": _arm(good, zeros, good)}, rails)
    assert action == "rollback" and "error" in reason
    # too little evidence: no decision either way
    few = _arm([0.0] * 10, [], [])
    assert decide({"production": prod, "candidate": few}, rails)[0] == "continue"
