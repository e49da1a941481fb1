"""Issue 15 item 5: the length-controlled win rate carries a bootstrap CI over prompts."""

from __future__ import annotations

import numpy as np
import pytest

from prefline.evaluate.policy_metrics import length_controlled_win_rate
from prefline.evaluate.policy_result import lc_rate_with_ci, rate_with_ci, verdict


def test_equal_lengths_give_the_plain_rate_and_its_ci() -> None:
    """With every length difference 0 the fit is the raw win rate, so with one comparison per
    prompt each resample's refit is that resample's mean: the same draws (same seed) must give
    the plain win rate's CI."""
    rng = np.random.default_rng(3)
    scores = [[float(s)] for s in rng.choice([0.0, 0.5, 1.0], size=40, p=[0.3, 0.1, 0.6])]
    zeros = [[0.0] for _ in scores]
    lc, ci = lc_rate_with_ci(scores, zeros, n_boot=300, seed=7)
    plain = rate_with_ci(scores, n_boot=300, seed=7)
    assert lc == pytest.approx(plain.win_rate, abs=1e-9)
    assert ci == pytest.approx(plain.ci, abs=1e-6)


def test_ci_brackets_the_estimate_and_keeps_prompts_together() -> None:
    """A judge that prefers longer answers: the point estimate is the full-data fit and lies
    inside its CI; empty prompts are skipped, not counted."""
    rng = np.random.default_rng(0)
    diffs = [[float(d) for d in rng.integers(-20, 21, size=2)] for _ in range(30)]
    scores = [[1.0 if d + rng.normal(0, 8) > -4 else 0.0 for d in row] for row in diffs]
    lc, (low, high) = lc_rate_with_ci(scores + [[]], diffs + [[]], n_boot=200, seed=1)
    assert lc == pytest.approx(length_controlled_win_rate(
        [s for r in scores for s in r], [d for r in diffs for d in r]))
    assert low <= lc <= high and high - low > 0.01


def test_verdict_names_each_outcome_against_the_target() -> None:
    assert verdict(0.65, (0.55, 0.74), "rubric").target_met
    assert "misses the target" in verdict(0.56, (0.51, 0.61), "rubric").text
    worse = verdict(0.42, (0.36, 0.49), "rubric")
    assert not worse.target_met and "worse than the baseline" in worse.text
    assert "'rubric'" in worse.text
    assert "does not exclude 50%" in verdict(0.48, (0.41, 0.55), "rubric").text
