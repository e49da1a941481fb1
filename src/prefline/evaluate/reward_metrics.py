"""Reward-model metrics: accuracy with CI, calibration, slices, shortcuts and robustness.

Every function takes a :class:`prefline.models.reward.Scorer` (a reward model or an
ensemble) and plain examples. :func:`evaluate_reward` gathers them for the ``eval reward``
stage (:mod:`prefline.evaluate.reward`); NaN marks a figure that is undefined on the data.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from prefline.base.errors import PreflineError
from prefline.evaluate.stats import bootstrap_ci, rank_correlations
from prefline.formats.examples import PreferencePair, RatingExample, as_messages
from prefline.formats.jsonl import read_jsonl
from prefline.models.calibration import pairwise_ece, reliability_bins, symmetric_pairs
from prefline.models.reward import RewardModel, Scorer


def score_pairs(scorer: Scorer, pairs: Sequence[PreferencePair],
                personal: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (chosen, rejected) scores ``[P]`` each, all in one bucketed pass. A
    personalised model scores each pair for its user/segment (``personal`` False: with the
    shared fallback, as for a user it does not know)."""
    items = [(p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)]
    if personal and isinstance(scorer, RewardModel) and scorer.spec.personal is not None:
        spec = scorer.spec.personal
        values = [spec.value_of(p.segment, p.user) for p in pairs for _ in range(2)]
        s = np.asarray(scorer.score_items(items, values), dtype=np.float64)
    else:
        s = np.asarray(scorer.score_items(items), dtype=np.float64)
    return s[0::2], s[1::2]


@dataclass(frozen=True)
class PairMetrics:
    """Pairwise accuracy and calibration of a reward model on preference pairs."""

    n_pairs: int
    """Strict pairs (a preferred response); ties are counted apart."""
    n_ties: int
    accuracy: float
    """Share of strict pairs ordered correctly (an exact tie of scores counts ½)."""
    accuracy_ci: tuple[float, float]
    """95% percentile-bootstrap interval of ``accuracy``."""
    ece: float
    """Expected calibration error of σ(Δ/T), both orientations of each pair."""
    temperature: float
    mean_margin: float
    """Mean r_chosen − r_rejected over strict pairs (normalised reward units)."""
    per_tag: dict[str, dict[str, Any]]
    """tag → {n, accuracy, accuracy_ci}."""
    length_bias: dict[str, Any]
    tie_mean_abs_p: float | None = None
    """Mean |P(a ≻ b) − ½| over tie pairs (near 0 is good); None without ties."""


def evaluate_pairs(scorer: Scorer, pairs: Sequence[PreferencePair],
                   scores: tuple[np.ndarray, np.ndarray] | None = None) -> PairMetrics:
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
    tie_p = None
    if tie.any():
        p_tie = 1 / (1 + np.exp(-delta[tie] / t))
        tie_p = float(np.abs(p_tie - 0.5).mean())
    return PairMetrics(
        n_pairs=int(strict.sum()), n_ties=int(tie.sum()), accuracy=float(correct.mean()),
        accuracy_ci=bootstrap_ci(correct), ece=pairwise_ece(delta[strict], t), temperature=t,
        mean_margin=float(delta[strict].mean()), per_tag=_per_tag(pairs, delta),
        length_bias=length_bias(pairs, c, r), tie_mean_abs_p=tie_p)


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
    return _rewardbench_summary(_per_tag(pairs, c - r))


def _rewardbench_summary(per: dict[str, dict[str, Any]]) -> dict[str, Any]:
    n = sum(v["n"] for v in per.values())
    return {"subsets": per,
            "overall_weighted": sum(v["n"] * v["accuracy"] for v in per.values()) / max(1, n),
            "overall_macro": float(np.mean([v["accuracy"] for v in per.values()])),
            "n_pairs": n}


@dataclass(frozen=True)
class RewardEvalMetrics(PairMetrics):
    """Everything ``prefline eval reward`` reports (its JSON keys are these fields)."""

    ratings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """criterion → {n, spearman, kendall} between the reward and the rating."""
    robustness: dict[str, dict[str, Any]] = field(default_factory=dict)
    """probe → {n, mean_delta, rose_fraction}."""
    rewardbench: dict[str, Any] | None = None


def evaluate_reward(scorer: Scorer, pairs: Sequence[PreferencePair],
                    ratings: Sequence[RatingExample] = (), probes: int = 100,
                    bench: bool = False) -> tuple[RewardEvalMetrics, dict[str, Any]]:
    """(metrics, plot data for the HTML report). ``bench``: the pairs are RewardBench rows
    (tagged by subset) and ``rewardbench`` holds the per-subset figures."""
    c, r = score_pairs(scorer, pairs)
    base = evaluate_pairs(scorer, pairs, (c, r))
    metrics = RewardEvalMetrics(
        **{f.name: getattr(base, f.name) for f in fields(PairMetrics)},
        ratings=rating_agreement(scorer, ratings),
        robustness=robustness(scorer, [p for p in pairs if not p.tie], probes),
        rewardbench=_rewardbench_summary(base.per_tag) if bench else None)
    strict = np.array([not p.tie for p in pairs])
    probs, outcomes = symmetric_pairs((c - r)[strict], scorer.temperature)
    raw_p, raw_y = symmetric_pairs((c - r)[strict], 1.0)
    plots = {
        "reliability": [asdict(b) for b in reliability_bins(probs, outcomes)],
        "reliability_uncalibrated": [asdict(b) for b in reliability_bins(raw_p, raw_y)],
        "chosen": c.tolist(), "rejected": r.tolist(), "tie": (~strict).tolist(),
        "len_chosen": [len(p.chosen) for p in pairs],
        "len_rejected": [len(p.rejected) for p in pairs],
    }
    return metrics, plots
