"""Per-segment accuracy of a reward model, against a global one (issue 14, item 2).

For each value of the segment key (``style=concise``, ...) the table gives n, pairwise
accuracy with a 95% bootstrap CI, and the expected accuracy (the mean calibrated
probability the model gives the labelled choice, σ(Δ/T)) for up to three scorers:

- ``model``: the evaluated model (a personalised one scores each pair for its segment);
- ``fallback``: a personalised model's shared fallback (scored without the segment, as for
  a user it does not know);
- ``global``: another reward model given with ``compare`` (e.g. one trained without
  ``--personal`` on the same data).

Why expected accuracy too: where two segments want opposite things, a global model that
has learnt it cannot please both is indifferent, and the sign of its tiny margins (hence
its hard accuracy on each segment) follows whatever residual bias it kept; its calibrated
probability is near ½ on each, which says so. Groups with fewer than ``min_group_size``
pairs are not shown (k-anonymity, :func:`prefline.base.privacy.k_anonymous`); the table
says how many were suppressed. Pairs without the key form the group ``(none)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from prefline.base.privacy import k_anonymous, suppressed_note
from prefline.evaluate.reward_metrics import score_pairs
from prefline.evaluate.stats import bootstrap_ci
from prefline.formats.examples import PreferencePair
from prefline.models.personal import USER_KEY
from prefline.models.reward import RewardModel, Scorer

NONE = "(none)"


def personal_key(scorer: Scorer) -> str | None:
    """The key a personalised model conditions on (None for any other scorer)."""
    if isinstance(scorer, RewardModel) and scorer.spec.personal is not None:
        return scorer.spec.personal.key
    return None


def _value(pair: PreferencePair, key: str) -> str:
    value = pair.user if key == USER_KEY else pair.segment.get(key)
    return NONE if value is None else str(value)


def _figures(delta: np.ndarray, temperature: float) -> dict[str, Any]:
    correct = np.where(delta > 0, 1.0, np.where(delta == 0, 0.5, 0.0))
    p = 1.0 / (1.0 + np.exp(-delta / temperature))
    return {"accuracy": float(correct.mean()), "accuracy_ci": list(bootstrap_ci(correct)),
            "expected_accuracy": float(p.mean())}


def segment_table(scorer: Scorer, pairs: Sequence[PreferencePair], key: str, *,
                  min_group_size: int, compare: Scorer | None = None) -> dict[str, Any]:
    """``{"key", "min_group_size", "models", "rows": [{"segment", "n", <model>: {accuracy,
    accuracy_ci, expected_accuracy}}], "suppressed"}`` over the strict pairs."""
    strict = [p for p in pairs if not p.tie]
    values = [_value(p, key) for p in strict]
    counts = Counter(values)
    shown = k_anonymous(counts, min_group_size)
    scorers: dict[str, tuple[Scorer, bool]] = {"model": (scorer, True)}
    if personal_key(scorer) is not None:
        scorers["fallback"] = (scorer, False)
    if compare is not None:
        scorers["global"] = (compare, True)
    deltas = {}
    for name, (s, personal) in scorers.items():
        c, r = score_pairs(s, strict, personal=personal)
        deltas[name] = (c - r, float(s.temperature))
    rows = []
    for value in sorted(shown):
        idx = np.array([i for i, v in enumerate(values) if v == value])
        row: dict[str, Any] = {"segment": value, "n": int(idx.size)}
        for name, (delta, t) in deltas.items():
            row[name] = _figures(delta[idx], t)
        rows.append(row)
    return {"key": key, "min_group_size": min_group_size, "models": list(scorers),
            "rows": rows, "suppressed": suppressed_note(counts, min_group_size)}


def table_lines(table: dict[str, Any]) -> list[str]:
    """The table as text lines (the command line's output and docs)."""
    head = f"{table['key']:<12} {'n':>5}  " + "  ".join(
        f"{m + ' acc [95% CI]':<26} {'E[acc]':>6}" for m in table["models"])
    lines = [head]
    for row in table["rows"]:
        cells = []
        for m in table["models"]:
            f = row[m]
            lo, hi = f["accuracy_ci"]
            cells.append(f"{f['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]".ljust(26)
                         + f" {f['expected_accuracy']:>6.3f}")
        lines.append(f"{row['segment']:<12} {row['n']:>5}  " + "  ".join(cells))
    if table.get("suppressed"):
        lines.append(table["suppressed"])
    return lines
