"""Policy metrics against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from prefline.evaluate.policy_metrics import (
    distinct_n,
    length_controlled_win_rate,
    mean_kl,
    mean_length,
    outcome_score,
    win_rate,
)
from prefline.judges.refusal import is_refusal, refusal_rate


def test_win_rate_counts_ties_and_both_bad_as_half() -> None:
    # a, a, b, tie, both_bad -> 1 + 1 + 0 + .5 + .5 = 3 of 5
    scores = [outcome_score(c) for c in ["a", "a", "b", "tie", "both_bad"]]
    assert win_rate(scores) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="unknown judge choice"):
        outcome_score("left")


def test_length_controlled_equals_raw_when_lengths_match() -> None:
    # all Δlen = 0: the slope is unidentified (ridge keeps it 0), σ(b0) = mean = 0.7
    scores = [1, 1, 1, 0, 0.5, 1, 0, 1, 1, 0.5]
    assert length_controlled_win_rate(scores, [0] * 10) == pytest.approx(0.7, abs=1e-6)


def test_length_controlled_removes_a_pure_length_preference() -> None:
    # Three comparisons where A is longer (Δ=+1) with soft win 0.75, one where A is shorter
    # (Δ=-1) with 0.25. Raw rate = (3·.75 + .25)/4 = 0.625. The exact fit is
    # σ(b0 + b1) = .75, σ(b0 − b1) = .25  ⇒  b0 = 0, b1 = ln 3, so at equal length A wins 0.5.
    scores, diff = [0.75, 0.75, 0.75, 0.25], [1, 1, 1, -1]
    assert win_rate(scores) == pytest.approx(0.625)
    assert length_controlled_win_rate(scores, diff, l2=0.0) == pytest.approx(0.5, abs=1e-6)
    # the unit of length does not matter (Δ is rescaled; the intercept is scale-free)
    assert length_controlled_win_rate(scores, [40, 40, 40, -40], l2=0.0) == pytest.approx(0.5, abs=1e-6)


def test_length_controlled_is_finite_on_separable_data() -> None:
    # longer always wins: without the ridge b1 → ∞; with it the answer stays in (0, 1)
    lc = length_controlled_win_rate([1, 1, 0, 0], [2, 1, -1, -2])
    assert 0.0 < lc < 1.0 and math.isfinite(lc)
    assert lc == pytest.approx(0.5, abs=1e-3)  # symmetric data: no advantage at Δ = 0


def test_mean_kl_sums_tokens_and_averages_responses() -> None:
    # response 1: (−1 − −2) + (−0.5 − −0.5) = 1.0; response 2: (−3 − −1) = −2.0; mean −0.5
    assert mean_kl([[-1.0, -0.5], [-3.0]], [[-2.0, -0.5], [-1.0]]) == pytest.approx(-0.5)
    assert mean_kl([[-1.0]], [[-1.0]]) == 0.0
    with pytest.raises(ValueError):
        mean_kl([[-1.0, -2.0]], [[-1.0]])


def test_length_and_distinct_n() -> None:
    texts = ["the cat sat", "The cat ran away"]
    assert mean_length(texts) == pytest.approx(3.5)
    # unigrams: the,cat,sat,the,cat,ran,away → 5 unique of 7
    assert distinct_n(texts, 1) == pytest.approx(5 / 7)
    # bigrams: (the cat),(cat sat),(the cat),(cat ran),(ran away) → 4 unique of 5
    assert distinct_n(texts, 2) == pytest.approx(4 / 5)
    assert distinct_n(["one"], 2) == 0.0


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("I'm sorry, but I can't help with that request.", True),
        ("I cannot assist with making weapons.", True),
        ("As an AI, I must decline.", True),
        ("I’m afraid I won’t provide that.", True),
        ("To kill a stuck process, run `kill -9 PID`.", False),
        ("Use kill. Note: you can't undo this once done, so I cannot stress enough: check the PID.", False),
        ("Sure! Here is a poem about the sea.", False),
    ],
)
def test_refusal_detector(text: str, refused: bool) -> None:
    assert is_refusal(text) is refused


def test_refusal_rate_on_a_slice() -> None:
    assert refusal_rate(["I'm sorry, I can't do that.", "Sure, here you go."]) == 0.5
    assert refusal_rate([]) is None
