"""Pure metrics for comparing two policies' responses (no models, no I/O).

Judge outcomes are scores from A's side: 1.0 when A's response wins, 0.0 when B's wins,
0.5 for a tie. Everything here is plain Python/numpy so it can be checked by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CHOICE_SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


def outcome_score(choice: str) -> float:
    """A judge's choice ('a' | 'b' | 'tie' | 'both_bad') as A's score: 1, 0 or ½.

    ``both_bad`` counts as a tie: neither side is preferred, so it must not move the rate.
    """
    if choice not in CHOICE_SCORE:
        raise ValueError(f"unknown judge choice {choice!r}; expected one of {sorted(CHOICE_SCORE)}")
    return CHOICE_SCORE[choice]


def win_rate(scores: Sequence[float]) -> float:
    """Mean of A's scores (ties already ½): the probability A beats B, ties split evenly."""
    if not scores:
        raise ValueError("win_rate needs at least one comparison")
    return float(np.mean(scores))


def length_controlled_win_rate(
    scores: Sequence[float], length_diff: Sequence[float], l2: float = 1e-4, iters: int = 50,
) -> float:
    """Win rate A would have at equal length: ``sigmoid(b0)`` of ``P(win) = σ(b0 + b1·Δlen)``.

    ``scores`` are A's soft outcomes in [0, 1] (ties ½), ``length_diff`` is len(A) − len(B) per
    comparison (any unit). Judges (and reward models) often prefer longer answers, so a policy
    can "win" just by talking more. Fitting the logistic regression of win on the length
    difference separates the two: the slope b1 absorbs the length preference and the
    intercept b0 is the log-odds of winning when both answers have the same length. With all
    differences zero this equals the raw win rate. Fitted by Newton's method on the soft-label
    log-likelihood; ``l2`` is a tiny ridge on the slope only, so perfectly length-separable
    data still gives a finite answer. Δlen is divided by its RMS, which leaves b0 unchanged.
    """
    y = np.asarray(scores, dtype=float)
    d = np.asarray(length_diff, dtype=float)
    if y.shape != d.shape or y.size == 0:
        raise ValueError("scores and length_diff must be non-empty and the same length")
    rms = math.sqrt(float(np.mean(d * d)))
    x = np.stack([np.ones_like(d), d / rms if rms > 0 else d], axis=1)
    ridge = np.diag([0.0, l2 * y.size])
    beta = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (y - p) - ridge @ beta
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta += step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return float(1.0 / (1.0 + math.exp(-beta[0])))


def mean_kl(logp_a: Sequence[Sequence[float]], logp_b: Sequence[Sequence[float]]) -> float:
    """Monte-Carlo KL(A‖B) in nats per response, from responses sampled from A.

    ``logp_a[i][t]`` / ``logp_b[i][t]`` are the log-probabilities A and B give token t of
    A's i-th sampled response. KL(A‖B) = E_{y~A}[log A(y) − log B(y)], and log A(y) is the sum
    over its tokens, so the estimate is the mean over responses of Σ_t (log pA − log pB).
    A single sample can be negative; the average is unbiased only when the log-probs are
    those of the distribution the responses were sampled from (not untempered log-probs of
    tempered samples). ``eval policy`` uses the lower-variance per-token-exact estimator of
    :mod:`prefline.evaluate.kl` instead.
    """
    if len(logp_a) != len(logp_b) or not logp_a:
        raise ValueError("need the same, non-zero number of responses from both policies")
    totals = []
    for a, b in zip(logp_a, logp_b, strict=True):
        if len(a) != len(b):
            raise ValueError("each response needs one log-prob per token from both policies")
        totals.append(float(np.sum(np.asarray(a, float) - np.asarray(b, float))))
    return float(np.mean(totals))


def words(text: str) -> list[str]:
    """Lower-cased whitespace tokens: the unit for length and distinct-n (model-independent)."""
    return text.lower().split()


def mean_length(texts: Sequence[str]) -> float:
    """Mean response length in whitespace words."""
    if not texts:
        raise ValueError("mean_length needs at least one response")
    return float(np.mean([len(words(t)) for t in texts]))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n: unique word n-grams ÷ all word n-grams, pooled over ``texts`` (0 if none).

    A policy collapsing onto one stock answer scores low; varied answers score near 1.
    """
    grams: list[tuple[str, ...]] = []
    for text in texts:
        toks = words(text)
        grams.extend(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0
