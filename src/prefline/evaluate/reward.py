"""Reward-model evaluation: accuracy with CI, calibration, slices, shortcuts and robustness.

Every function takes a :class:`prefline.models.ensemble.Scorer` (a reward model or an
ensemble) and plain examples, and returns JSON-ready dicts (NaN where undefined).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from prefline.base.errors import PreflineError
from prefline.evaluate.stats import (
    bootstrap_ci,
    pairwise_ece,
    rank_correlations,
    reliability_bins,
    symmetric_pairs,
)
from prefline.formats.examples import PreferencePair, RatingExample, as_messages
from prefline.models.ensemble import Scorer


def score_pairs(scorer: Scorer, pairs: Sequence[PreferencePair]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (chosen, rejected) scores ``[P]`` each, all in one bucketed pass."""
    items = [(p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)]
    s = np.asarray(scorer.score_items(items), dtype=np.float64)
    return s[0::2], s[1::2]


def evaluate_pairs(scorer: Scorer, pairs: Sequence[PreferencePair],
                   scores: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Pairwise accuracy (+95% bootstrap CI), ECE, per-tag accuracy, ties and length bias.

    Strict pairs count 1 when Δ > 0, ½ when Δ = 0. Tie pairs are excluded from accuracy and
    reported separately: a good model gives them P(a ≻ b) near ½ (``tie_mean_abs_p``).
    """
    if not pairs:
        raise PreflineError("no pairs to evaluate")
    c, r = scores if scores is not None else score_pairs(scorer, pairs)
    delta = c - r
    tie = np.array([p.tie for p in pairs])
    strict = ~tie
    if not strict.any():
        raise PreflineError("every pair is a tie; accuracy needs pairs with a preferred response")
    correct = np.where(delta > 0, 1.0, np.where(delta == 0, 0.5, 0.0))[strict]
    t = float(scorer.temperature)
    lo, hi = bootstrap_ci(correct)
    out: dict[str, Any] = {
        "n_pairs": int(strict.sum()), "n_ties": int(tie.sum()),
        "accuracy": float(correct.mean()), "accuracy_ci": [lo, hi],
        "ece": pairwise_ece(delta[strict], t), "temperature": t,
        "mean_margin": float(delta[strict].mean()),
    }
    if tie.any():
        p_tie = 1 / (1 + np.exp(-delta[tie] / t))
        out["tie_mean_abs_p"] = float(np.abs(p_tie - 0.5).mean())
    out["per_tag"] = _per_tag(pairs, delta)
    out["length_bias"] = length_bias(pairs, c, r)
    return out


def _per_tag(pairs: Sequence[PreferencePair], delta: np.ndarray) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[float]] = {}
    for p, d in zip(pairs, delta, strict=True):
        if p.tie:
            continue
        for tag in p.tags:
            groups.setdefault(tag, []).append(1.0 if d > 0 else 0.5 if d == 0 else 0.0)
    return {tag: {"n": len(v), "accuracy": float(np.mean(v)), "accuracy_ci": list(bootstrap_ci(v))}
            for tag, v in sorted(groups.items())}


def length_bias(pairs: Sequence[PreferencePair], c: np.ndarray, r: np.ndarray) -> dict[str, Any]:
    """Accuracy when the chosen response is longer vs shorter, and reward-length correlation.

    A model that learnt "longer is better" is accurate only where chosen is longer.
    """
    strict = np.array([not p.tie for p in pairs])
    lc = np.array([len(p.chosen) for p in pairs], dtype=np.float64)
    lr = np.array([len(p.rejected) for p in pairs], dtype=np.float64)
    ok = np.where(c > r, 1.0, np.where(c == r, 0.5, 0.0))
    longer, shorter = strict & (lc > lr), strict & (lc < lr)
    corr = rank_correlations(np.concatenate([lc, lr]).tolist(), np.concatenate([c, r]).tolist())
    return {
        "n_chosen_longer": int(longer.sum()), "n_chosen_shorter": int(shorter.sum()),
        "accuracy_chosen_longer": float(ok[longer].mean()) if longer.any() else math.nan,
        "accuracy_chosen_shorter": float(ok[shorter].mean()) if shorter.any() else math.nan,
        "reward_length_spearman": corr["spearman"],
    }


def rating_agreement(scorer: Scorer, ratings: Sequence[RatingExample]) -> dict[str, Any]:
    """Spearman/Kendall between the reward and each Likert criterion (when rated)."""
    if not ratings:
        return {}
    s = scorer.score_items([(x.prompt, x.response) for x in ratings])
    out: dict[str, Any] = {}
    for crit in sorted({k for x in ratings for k in x.scores}):
        idx = [i for i, x in enumerate(ratings) if crit in x.scores]
        out[crit] = {"n": len(idx), **rank_correlations([s[i] for i in idx],
                                                       [ratings[i].scores[crit] for i in idx])}
    return out


# ----- robustness probes ----------------------------------------------------------------------
FILLER = (" To elaborate further, it is worth noting that this is an important point to keep in"
          " mind, and there are many aspects to consider in this context.")


def _confident(text: str) -> str:
    return f"Absolutely, I am 100% certain about this. {text} This is definitely correct."


def _typos(text: str, seed: int = 0, rate: float = 0.25) -> str:
    """Swap two adjacent letters in about ``rate`` of the longer words (at least one word;
    deterministic in ``seed``)."""
    rng = random.Random(seed)
    words = text.split(" ")
    eligible = [i for i, w in enumerate(words) if len(w) > 3]
    picked = [i for i in eligible if rng.random() < rate] or eligible[:1]
    for i in picked:
        w = words[i]
        j = rng.randrange(len(w) - 1)
        if w[j] == w[j + 1]:
            j = next((k for k in range(len(w) - 1) if w[k] != w[k + 1]), j)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


PROBES = {"filler": lambda t: t + FILLER * 2, "confident": _confident, "typos": _typos}
"""Perturbations that add no content; a robust reward should not rise under them."""


def robustness(scorer: Scorer, pairs: Sequence[PreferencePair], n: int = 100) -> dict[str, Any]:
    """Per probe: mean score change and the share of responses whose score ROSE."""
    sample = list(pairs)[:n]
    if not sample:
        return {}
    base = np.asarray(scorer.score_items([(p.prompt, p.chosen) for p in sample]))
    out = {}
    for name, fn in PROBES.items():
        moved = np.asarray(scorer.score_items([(p.prompt, fn(p.chosen)) for p in sample]))
        d = moved - base
        out[name] = {"n": len(sample), "mean_delta": float(d.mean()),
                     "rose_fraction": float((d > 1e-6).mean())}
    return out


# ----- RewardBench-format runner --------------------------------------------------------------
def load_rewardbench(path: str | Path) -> list[PreferencePair]:
    """Rows ``{prompt, chosen, rejected, subset}`` (JSON Lines) → pairs tagged by subset."""
    from prefline.formats.jsonl import read_jsonl

    pairs = []
    for line, row in read_jsonl(Path(path)):
        for key in ("prompt", "chosen", "rejected", "subset"):
            if not isinstance(row, dict) or not isinstance(row.get(key), str):
                raise PreflineError("expected a string", path=str(path), line=line, field=key)
        pairs.append(PreferencePair(as_messages(row["prompt"]), row["chosen"], row["rejected"],
                                    tags=(row["subset"],)))
    if not pairs:
        raise PreflineError("no rows", path=str(path))
    return pairs


def rewardbench(scorer: Scorer, pairs: Sequence[PreferencePair]) -> dict[str, Any]:
    """Per-subset accuracy, overall weighted by subset size, and the unweighted subset mean."""
    c, r = score_pairs(scorer, pairs)
    per = _per_tag(pairs, c - r)
    n = sum(v["n"] for v in per.values())
    return {"subsets": per,
            "overall_weighted": sum(v["n"] * v["accuracy"] for v in per.values()) / max(1, n),
            "overall_macro": float(np.mean([v["accuracy"] for v in per.values()])),
            "n_pairs": n}


def evaluate_reward(scorer: Scorer, pairs: Sequence[PreferencePair],
                    ratings: Sequence[RatingExample] = (), probes: int = 100) -> dict[str, Any]:
    """Everything ``prefline eval reward`` reports, plus plot data under ``_plots``."""
    c, r = score_pairs(scorer, pairs)
    out = evaluate_pairs(scorer, pairs, (c, r))
    out["ratings"] = rating_agreement(scorer, ratings)
    out["robustness"] = robustness(scorer, [p for p in pairs if not p.tie], probes)
    strict = np.array([not p.tie for p in pairs])
    probs, outcomes = symmetric_pairs((c - r)[strict], scorer.temperature)
    raw_p, raw_y = symmetric_pairs((c - r)[strict], 1.0)
    out["_plots"] = {
        "reliability": [asdict(b) for b in reliability_bins(probs, outcomes)],
        "reliability_uncalibrated": [asdict(b) for b in reliability_bins(raw_p, raw_y)],
        "chosen": c.tolist(), "rejected": r.tolist(), "tie": (~strict).tolist(),
        "len_chosen": [len(p.chosen) for p in pairs],
        "len_rejected": [len(p.rejected) for p in pairs],
    }
    return out
