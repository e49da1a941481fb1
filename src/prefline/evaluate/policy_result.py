"""What a policy evaluation reports: typed sections and the pure summaries that fill them.

Scores are A's side of each comparison (1 win, 0 loss, ½ tie); confidence intervals are
bootstrapped over prompts (a prompt's samples move together). No models or I/O here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from prefline.base.stage import Ref, StageResult
from prefline.evaluate.policy_metrics import (
    distinct_n,
    length_controlled_win_rate,
    mean_length,
    win_rate,
    words,
)
from prefline.evaluate.stats import bootstrap_ci
from prefline.formats.examples import as_messages
from prefline.generate.io import PromptRow
from prefline.judges.refusal import refusal_rate

REFUSAL_SLICES = ("should_refuse", "should_not_refuse")
TARGET_WIN_RATE = 0.60


@dataclass(frozen=True)
class WinRate:
    """A win rate over ``n`` comparisons with its 95% bootstrap CI over prompts."""

    win_rate: float
    ci: tuple[float, float]
    n: int


ROLES = ("held-out", "labelling", "proxy")
"""A judge's relation to A's training: held-out (produced no training label and was not
written with them in view), labelling (labelled A's training data: the annotator), proxy (the
reward model trained on those labels). Only a held-out judge can be the headline."""


@dataclass(frozen=True)
class CategoryRate:
    """A win rate within one prompt category, over ``n`` comparisons."""

    win_rate: float
    n: int


@dataclass(frozen=True)
class JudgeOutcome:
    """One judge's verdicts on A vs B (a row of the evaluation's judge matrix)."""

    spec: str
    win_rate: float
    ci: tuple[float, float]
    n: int
    length_controlled_win_rate: float
    """The win rate A would have at equal response length (see policy_metrics)."""
    length_controlled_ci: tuple[float, float]
    """95% bootstrap CI of the length-controlled rate over prompts (refitted per resample)."""
    per_category: dict[str, CategoryRate]
    config: dict[str, Any]
    """Everything that determines the judge's output."""
    role: str = "held-out"
    """held-out | labelling | proxy (see :data:`ROLES`)."""


@dataclass(frozen=True)
class ProxyOutcome:
    """The reward model as a judge on the same pairs (higher reward wins)."""

    win_rate: float
    ci: tuple[float, float]
    n: int
    mean_reward_policy: float
    mean_reward_baseline: float


@dataclass(frozen=True)
class SideStats:
    """Length, diversity and refusals of one policy's responses."""

    mean_length_words: float
    distinct_1: float
    distinct_2: float
    refusal_rate: dict[str, float | None]
    """Per slice (should_refuse, should_not_refuse) and ``all``; None for an empty slice."""
    lengths: tuple[int, ...]


@dataclass(frozen=True)
class Outcome:
    """Plain-language result against the target (win rate ≥ 60%, CI lower bound > 50%)."""

    target_met: bool
    text: str


@dataclass(frozen=True)
class NamedInput:
    """One input of the evaluation as the user named it, and what that resolved to."""

    spec: str
    """As typed: a folder, a Hub id, ``default``, ``artifact:ID``, a judge spec, a prompts
    source."""
    artifact_id: int | None = None
    """Its registry id, when it is a registered artifact (named by id or by its path)."""
    path: str | None = None
    """What was loaded: the folder (the artifact's path) or the Hub id."""
    content_hash: str | None = None
    """For the prompts: a hash of the prompts evaluated (ids and messages)."""


@dataclass(frozen=True)
class PolicyEvalResult(StageResult):
    """An evaluation artifact: A vs B under a judge, with KL, lengths, refusals, examples."""

    artifact_kind: ClassVar[str] = "evaluation"

    judge: JudgeOutcome
    """The headline: a held-out judge (never the labelling judge or the proxy)."""
    kl: float | None
    """KL(policy ‖ baseline) of the distributions actually sampled (the evaluation's
    temperature; top-p cut from the policy and applied to both, so a lower bound on the
    KL with each side's own nucleus, which is infinite at ``kl_nucleus_miss`` of the
    positions), nats per response, exact per token on the policy's own samples (see
    :mod:`prefline.evaluate.kl`); None when the policies were sampled through a backend
    that cannot score given text (not hf) or greedily."""
    policy: SideStats
    baseline: SideStats
    n_prompts: int
    examples: tuple[dict[str, Any], ...]
    """A seeded sample of comparisons, side by side, with wins, losses and ties when the
    evaluation has them (see :func:`examples`)."""
    verdict: Outcome
    sampling: dict[str, Any]
    named_inputs: dict[str, NamedInput]
    """What was compared, as the user named it: ``policy``, ``baseline``, ``judge``,
    ``prompts`` and (with a proxy) ``reward_model``, with artifact ids where registered."""
    proxy: ProxyOutcome | None = None
    kl_t1: float | None = None
    """KL(policy ‖ baseline) of the models themselves (temperature 1, no top-p), nats per
    response, exact per token on the policy's own samples; None when not measured."""
    kl_nucleus_miss: float | None = None
    """Fraction of the policy's response positions where the baseline's own nucleus drops a
    token the policy's keeps (there the both-truncated KL is infinite); None: not measured."""
    matrix: tuple[JudgeOutcome, ...] = ()
    """A vs B under every judge, each row naming its role: the headline first, then the other
    held-out judges, the labelling judge and the proxy reward model (when given)."""
    inputs: tuple[Ref, ...] = ()
    """Policy, reference model (the baseline), judge and reward model."""
    path: Path | None = None
    """Where the evaluation's JSON was written (the registered file)."""

    @property
    def metrics(self) -> dict[str, Any]:
        """The headline numbers recorded with the artifact; every figure names its judge."""
        return {"judge": self.judge.spec, "judge_role": self.judge.role,
                "judge_win_rate": self.judge.win_rate,
                "judge_win_rate_ci": list(self.judge.ci),
                "length_controlled_win_rate": self.judge.length_controlled_win_rate,
                "length_controlled_ci": list(self.judge.length_controlled_ci),
                "proxy_win_rate": self.proxy.win_rate if self.proxy else None, "kl": self.kl,
                "kl_t1": self.kl_t1, "kl_nucleus_miss": self.kl_nucleus_miss,
                "n_prompts": self.n_prompts, "target_met": self.verdict.target_met,
                "matrix": {f"{r.role}:{r.spec}": {"win_rate": r.win_rate, "ci": list(r.ci)}
                           for r in self.matrix}}


def rate_with_ci(per_prompt: list[list[float]], n_boot: int, seed: int) -> WinRate:
    """Win rate over all comparisons and its 95% bootstrap CI over prompts."""
    flat = [s for row in per_prompt for s in row]
    means = [float(np.mean(row)) for row in per_prompt if row]
    low, high = bootstrap_ci(means, n_boot=n_boot, seed=seed)
    return WinRate(win_rate(flat), (low, high), len(flat))


def lc_rate_with_ci(per_prompt: list[list[float]], len_diff: list[list[float]], n_boot: int,
                    seed: int) -> tuple[float, tuple[float, float]]:
    """Length-controlled win rate over all comparisons and its 95% bootstrap CI over prompts:
    each resample draws prompts with replacement and refits the logistic regression on their
    comparisons (a prompt's samples stay together, as in :func:`rate_with_ci`)."""
    keep = [i for i, row in enumerate(per_prompt) if row]

    def fit(idx: np.ndarray) -> float:
        rows = [keep[int(i)] for i in idx]
        return length_controlled_win_rate([s for r in rows for s in per_prompt[r]],
                                          [d for r in rows for d in len_diff[r]])

    everything = np.arange(len(keep), dtype=np.float64)
    return fit(everything), bootstrap_ci(everything, stat=fit, n_boot=n_boot, seed=seed)


def judge_outcome(spec: str, role: str, config: dict[str, Any], rows: Sequence[PromptRow],
                  scores: list[list[float]], len_diff: list[list[float]], n_boot: int,
                  seed: int) -> JudgeOutcome:
    """One row of the judge matrix from A's per-prompt scores under that judge."""
    rate = rate_with_ci(scores, n_boot, seed)
    lc_rate, lc_ci = lc_rate_with_ci(scores, len_diff, n_boot, seed)
    return JudgeOutcome(spec=spec, win_rate=rate.win_rate, ci=rate.ci, n=rate.n,
                        length_controlled_win_rate=lc_rate, length_controlled_ci=lc_ci,
                        per_category=per_category(rows, scores), config=config, role=role)


def side_stats(rows: Sequence[PromptRow], responses: list[list[str]]) -> SideStats:
    """Length, diversity and per-slice refusal rates of one policy's responses."""
    flat = [r for rs in responses for r in rs]
    refusals = {name: refusal_rate([r for row, rs in zip(rows, responses, strict=True)
                                    if row.category == name for r in rs])
                for name in REFUSAL_SLICES}
    refusals["all"] = refusal_rate(flat)
    return SideStats(mean_length(flat), distinct_n(flat, 1), distinct_n(flat, 2), refusals,
                     tuple(len(words(t)) for t in flat))


def per_category(rows: Sequence[PromptRow], scores: list[list[float]]) -> dict[str, CategoryRate]:
    """Win rate and number of comparisons per prompt category (``None`` when the file has
    no categories): a rate over 12 comparisons is shown as such, not as a bare percentage."""
    cats: dict[str, list[float]] = {}
    for row, s in zip(rows, scores, strict=True):
        cats.setdefault(str(row.category), []).extend(s)
    return {c: CategoryRate(win_rate(v), len(v)) for c, v in sorted(cats.items())}


OUTCOMES = {1.0: "policy wins", 0.0: "baseline wins", 0.5: "tie"}
"""A's score in one comparison -> what the side-by-side calls it."""


def examples(rows: Sequence[PromptRow], resp_a: list[list[str]], resp_b: list[list[str]],
             scores: list[list[float]], seed: int = 0, k: int = 6) -> tuple[dict[str, Any], ...]:
    """A seeded sample of ``k`` comparisons for the side-by-side, not cherry-picked and not
    just the first prompts: wins, losses and ties are drawn in turn (each shuffled with
    ``seed``), so every outcome the evaluation has is shown; listed wins, losses, ties."""
    groups: dict[float, list[tuple[int, int]]] = {o: [] for o in OUTCOMES}
    for i, row_scores in enumerate(scores):
        for j, s in enumerate(row_scores):
            groups.setdefault(s, []).append((i, j))
    rng = random.Random(seed)
    for members in groups.values():
        rng.shuffle(members)
    picked: list[tuple[float, int, int]] = []
    while len(picked) < k and any(groups.values()):
        for outcome, members in groups.items():
            if members and len(picked) < k:
                picked.append((outcome, *members.pop()))
    order = list(groups)
    picked.sort(key=lambda p: (order.index(p[0]), p[1], p[2]))
    return tuple({"id": rows[i].id, "category": rows[i].category,
                  "prompt": as_messages(rows[i].prompt)[-1]["content"], "sample": j,
                  "policy": resp_a[i][j], "baseline": resp_b[i][j], "judge_score": outcome,
                  "outcome": OUTCOMES.get(outcome, f"score {outcome}")}
                 for outcome, i, j in picked)


def verdict(rate: float, ci: Sequence[float], judge: str = "rules") -> Outcome:
    """Plain-language outcome against the target: win rate ≥ 60% with CI lower bound > 50%,
    naming the (held-out) ``judge`` whose verdicts it is."""
    met = rate >= TARGET_WIN_RATE and ci[0] > 0.5
    span = f"(95% CI {ci[0]:.1%}–{ci[1]:.1%})"
    who = f"held-out judge {judge!r} win rate"
    if met:
        text = (f"The policy beats the baseline: {who} {rate:.1%} {span} meets the "
                "target of ≥ 60% with the CI above 50%.")
    elif ci[0] > 0.5:
        text = (f"The policy is better than the baseline but misses the target: {who} "
                f"{rate:.1%} {span} is below 60%.")
    elif ci[1] < 0.5:
        text = (f"The policy is worse than the baseline: {who} {rate:.1%} {span}; the whole "
                "CI is below 50%.")
    else:
        text = (f"No demonstrated improvement: {who} {rate:.1%} {span}; the CI does not "
                "exclude 50% (no better than the baseline).")
    return Outcome(met, text)
