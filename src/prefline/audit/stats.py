"""Small statistics shared by the audit checks: proportions with confidence intervals.

A metric that cannot be computed is reported as a sentence starting with ``"not defined:"``
(never NaN), so JSON readers and the HTML report can show the reason verbatim.
"""

from __future__ import annotations

import math
from typing import Any

NOT_DEFINED = "not defined"


def not_defined(reason: str) -> str:
    """The value stored in place of a number that cannot be computed, e.g. one annotator."""
    return f"{NOT_DEFINED}: {reason}"


def is_number(value: Any) -> bool:
    """True for a finite int/float (bools excluded); False for "not defined: ..." strings."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (default 95%).

    Preferred over the normal approximation because it stays inside [0, 1] and behaves
    for shares near 0 or 1 and small n (Wilson 1927; Brown, Cai & DasGupta 2001).
    """
    if n <= 0:
        raise ValueError("wilson_interval needs n > 0")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes: int, n: int, *, empty_reason: str, test_half: bool = True) -> dict[str, Any]:
    """``{"n", "count", "share", "ci95": [lo, hi], "p_value"}`` for ``successes`` out of ``n``.

    ``p_value`` is a two-sided exact binomial test against 0.5 (no bias), computed with
    scipy; it is omitted when ``test_half`` is False. With ``n == 0`` the share and
    interval are ``not_defined(empty_reason)``.
    """
    out: dict[str, Any] = {"n": int(n), "count": int(successes)}
    if n == 0:
        out["share"] = not_defined(empty_reason)
        out["ci95"] = not_defined(empty_reason)
        return out
    lo, hi = wilson_interval(successes, n)
    out["share"] = round(successes / n, 6)
    out["ci95"] = [round(lo, 6), round(hi, 6)]
    if test_half:
        from scipy.stats import binomtest

        out["p_value"] = float(binomtest(int(successes), int(n), 0.5).pvalue)
    return out


def rounded(value: float, digits: int = 6) -> float | str:
    """Round a finite float; NaN/inf become a "not defined" sentence instead of leaking."""
    if not math.isfinite(value):
        return not_defined("the statistic has no finite value on this data")
    return round(float(value), digits)
