"""A reward model's calibration: the temperature T of P(a ≻ b) = σ((r_a − r_b) / T) and how
well that probability matches observed preferences (ECE, reliability bins).

Training fits T on its validation pairs; evaluation reports ECE and reliability diagrams with
the same functions. Pure numpy, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReliabilityBin:
    lo: float
    hi: float
    count: int
    confidence: float
    """Mean predicted probability in the bin."""
    accuracy: float
    """Observed frequency of the event in the bin."""


def reliability_bins(probs: Sequence[float] | np.ndarray, outcomes: Sequence[float] | np.ndarray,
                     n_bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1] of (predicted probability, observed 0/1 outcome)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed last bin so p == 1.0 is counted
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        m = which == b
        n = int(m.sum())
        out.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), n,
                                  float(p[m].mean()) if n else math.nan,
                                  float(y[m].mean()) if n else math.nan))
    return out


def ece(probs: Sequence[float] | np.ndarray, outcomes: Sequence[float] | np.ndarray,
        n_bins: int = 10) -> float:
    """Expected calibration error: ``Σ_b (n_b / N) · |acc_b - conf_b|`` over equal-width bins.

    ``probs`` are P(event) and ``outcomes`` 0/1. For pairwise preferences pass
    P(chosen ≻ rejected) with outcome 1 for every pair, after symmetrising (see
    :func:`symmetric_pairs`), otherwise a constant 1 outcome hides over-confidence.
    """
    bins = reliability_bins(probs, outcomes, n_bins)
    total = sum(b.count for b in bins)
    if total == 0:
        return math.nan
    return float(sum(b.count / total * abs(b.accuracy - b.confidence) for b in bins if b.count))


def symmetric_pairs(deltas: Sequence[float] | np.ndarray,
                    temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Both orientations of each pair: probs σ(±Δ/T) with outcomes 1 and 0.

    A reward model's pairwise probability is P(chosen ≻ rejected) = σ(Δ/T); presenting each
    pair in both orders is what a calibration check sees when the side is random.
    """
    d = np.asarray(deltas, dtype=np.float64) / temperature
    p = 1 / (1 + np.exp(-d))
    return np.concatenate([p, 1 - p]), np.concatenate([np.ones_like(p), np.zeros_like(p)])


def pairwise_ece(deltas: Sequence[float] | np.ndarray, temperature: float = 1.0,
                 n_bins: int = 10) -> float:
    """ECE of σ(Δ/T) as P(chosen ≻ rejected), symmetrised."""
    p, y = symmetric_pairs(deltas, temperature)
    return ece(p, y, n_bins)


def fit_temperature(deltas: Sequence[float] | np.ndarray, lo: float = 0.05,
                    hi: float = 100.0) -> float:
    """Temperature T minimising the NLL ``Σ -log σ(Δ_i / T)`` of the observed preferences.

    The NLL is convex in 1/T, so a golden-section search over log T is enough (no autograd).
    Ties (Δ on tie pairs) should be excluded by the caller. Returns 1.0 for empty input.
    """
    d = np.asarray(deltas, dtype=np.float64)
    if d.size == 0 or not np.any(d):
        return 1.0

    def nll(log_t: float) -> float:
        return float(np.logaddexp(0.0, -d / math.exp(log_t)).sum())

    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, e = b - g * (b - a), a + g * (b - a)
    fc, fe = nll(c), nll(e)
    for _ in range(80):
        if fc < fe:
            b, e, fe = e, c, fc
            c = b - g * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, e, fe
            e = a + g * (b - a)
            fe = nll(e)
    return float(math.exp((a + b) / 2))
