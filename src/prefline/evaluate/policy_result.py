"""What a policy evaluation reports: typed sections and the pure summaries that fill them.

Scores are A's side of each comparison (1 win, 0 loss, ½ tie); confidence intervals are
bootstrapped over prompts (a prompt's samples move together). No models or I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from prefline.base.stage import Ref, StageResult
from prefline.evaluate.policy_metrics import distinct_n, mean_length, win_rate, words
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


@dataclass(frozen=True)
class JudgeOutcome:
    """The headline judge's verdicts on A vs B."""

    spec: str
    win_rate: float
    ci: tuple[float, float]
    n: int
    length_controlled_win_rate: float
    """The win rate A would have at equal response length (see policy_metrics)."""
    per_category: dict[str, float]
    config: dict[str, Any]
    """Everything that determines the judge's output."""


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
class PolicyEvalResult(StageResult):
    """An evaluation artifact: A vs B under a judge, with KL, lengths, refusals, examples."""

    artifact_kind: ClassVar[str] = "evaluation"

    judge: JudgeOutcome
    kl: float
    """KL(policy ‖ baseline) in nats per response, on the policy's own samples."""
    policy: SideStats
    baseline: SideStats
    n_prompts: int
    examples: tuple[dict[str, Any], ...]
    """The first sample of the first prompt of each category, side by side."""
    verdict: Outcome
    sampling: dict[str, Any]
    policy_path: str
    baseline_path: str
    proxy: ProxyOutcome | None = None
    inputs: tuple[Ref, ...] = ()
    """Policy, reference model (the baseline), judge and reward model."""
    path: Path | None = None
    """Where the evaluation's JSON was written (the registered file)."""

    @property
    def metrics(self) -> dict[str, Any]:
        """The headline numbers recorded with the artifact; every figure names its judge."""
        return {"judge": self.judge.spec, "judge_win_rate": self.judge.win_rate,
                "judge_win_rate_ci": list(self.judge.ci),
                "length_controlled_win_rate": self.judge.length_controlled_win_rate,
                "proxy_win_rate": self.proxy.win_rate if self.proxy else None, "kl": self.kl,
                "n_prompts": self.n_prompts, "target_met": self.verdict.target_met}


def rate_with_ci(per_prompt: list[list[float]], n_boot: int, seed: int) -> WinRate:
    """Win rate over all comparisons and its 95% bootstrap CI over prompts."""
    flat = [s for row in per_prompt for s in row]
    means = [float(np.mean(row)) for row in per_prompt if row]
    low, high = bootstrap_ci(means, n_boot=n_boot, seed=seed)
    return WinRate(win_rate(flat), (low, high), len(flat))


def side_stats(rows: Sequence[PromptRow], responses: list[list[str]]) -> SideStats:
    """Length, diversity and per-slice refusal rates of one policy's responses."""
    flat = [r for rs in responses for r in rs]
    refusals = {name: refusal_rate([r for row, rs in zip(rows, responses, strict=True)
                                    if row.category == name for r in rs])
                for name in REFUSAL_SLICES}
    refusals["all"] = refusal_rate(flat)
    return SideStats(mean_length(flat), distinct_n(flat, 1), distinct_n(flat, 2), refusals,
                     tuple(len(words(t)) for t in flat))


def per_category(rows: Sequence[PromptRow], scores: list[list[float]]) -> dict[str, float]:
    """Judge win rate per prompt category (``None`` when the file has no categories)."""
    cats: dict[str, list[float]] = {}
    for row, s in zip(rows, scores, strict=True):
        cats.setdefault(str(row.category), []).extend(s)
    return {c: win_rate(v) for c, v in sorted(cats.items())}


def examples(rows: Sequence[PromptRow], resp_a: list[list[str]], resp_b: list[list[str]],
             scores: list[list[float]], k: int = 6) -> tuple[dict[str, Any], ...]:
    """The first sample of the first prompt in each category: side by side, not cherry-picked."""
    picked: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if str(row.category) in seen:
            continue
        seen.add(str(row.category))
        picked.append({"id": row.id, "category": row.category,
                       "prompt": as_messages(row.prompt)[-1]["content"],
                       "policy": resp_a[i][0], "baseline": resp_b[i][0],
                       "judge_score": scores[i][0]})
        if len(picked) >= k:
            break
    return tuple(picked)


def verdict(rate: float, ci: Sequence[float]) -> Outcome:
    """Plain-language outcome against the target: win rate ≥ 60% with CI lower bound > 50%."""
    met = rate >= TARGET_WIN_RATE and ci[0] > 0.5
    span = f"(95% CI {ci[0]:.1%}–{ci[1]:.1%})"
    if met:
        text = (f"The policy beats the baseline: judge win rate {rate:.1%} {span} meets the "
                "target of ≥ 60% with the CI above 50%.")
    elif ci[0] > 0.5:
        text = (f"The policy is better than the baseline but misses the target: judge win rate "
                f"{rate:.1%} {span} is below 60%.")
    else:
        text = (f"No demonstrated improvement: judge win rate {rate:.1%} {span}; the CI does not "
                "exclude 50% (no better than the baseline).")
    return Outcome(met, text)
