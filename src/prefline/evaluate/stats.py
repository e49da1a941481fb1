"""Small statistics shared by the evaluators: bootstrap CIs and rank correlations.

Pure numpy (scipy for rank correlations), no torch, so the policy evaluator can import these
cheaply. Calibration (temperature, ECE, reliability bins) belongs to the reward model and
lives in :mod:`prefline.models.calibration`, because training fits the temperature too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, stat: Callable[[np.ndarray], float]
                 | None = None, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat`` (default: mean) over ``values``.

    ``values`` are per-item outcomes (e.g. 1.0 for a correctly ordered pair). Returns
    ``(low, high)``; for a single item both ends equal it, for none both are NaN.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    fn = stat or (lambda a: float(a.mean()))
    if x.size == 1:
        v = fn(x)
        return (v, v)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    if stat is None:  # vectorised fast path for the mean
        boots = x[idx].mean(axis=1)
    else:
        boots = np.array([fn(x[i]) for i in idx])
    alpha = (1 - level) / 2
    return (float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha)))


def rank_correlations(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Spearman ρ and Kendall τ-b between two equally long sequences (NaN if < 3 points)."""
    if len(x) < 3:
        return {"spearman": math.nan, "kendall": math.nan}
    from scipy import stats

    return {"spearman": float(stats.spearmanr(x, y).statistic),
            "kendall": float(stats.kendalltau(x, y).statistic)}
