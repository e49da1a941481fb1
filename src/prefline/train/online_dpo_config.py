"""``OnlineDPOConfig``: the settings of online / iterative DPO (torch-free, so the command
line derives ``prefline train online-dpo`` from it without loading torch)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from prefline.base.config import check_at_least, check_sampling
from prefline.base.errors import PreflineError
from prefline.generate.best_of_n import check_scorer_spec
from prefline.judges import parse_spec
from prefline.train.policy_config import DPOConfig


@dataclass(frozen=True)
class OnlineDPOConfig:
    """Rounds of sample → label → pairs → DPO, and the monitor that watches them."""

    prompts: str = "bundled:train"
    """Training prompts: JSONL (prompt, optional id/category), a text file with one prompt
    per line, or bundled:train."""
    model: str | None = None
    """Policy to start from (best a warm start from `prefline train sft`): hub id or
    folder; none = the embedded SmolLM2-135M-Instruct. The initial reference too."""
    reward: str | None = None
    """Labeller: reward-model folder (or reward:DIR) or python:MODULE:FUNC /
    python:FILE.py:FUNC (a verifiable reward). Give this or judge."""
    judge: str | None = None
    """Labeller: any judge spec (rules, openai:URL[#model], lm:PATH); a pairwise judge
    scores each candidate by its share of wins against the others."""
    gold: str | None = None
    """Held-out judge or reward for the monitor (never trains): gold score against KL,
    early stop when it falls. Any labeller spec."""
    rounds: int = 3
    """Rounds of sample → label → DPO."""
    prompts_per_round: int = 64
    """Prompts sampled per round (a seeded draw without replacement; 0 = all)."""
    k: int = 4
    """Candidates sampled per prompt."""
    max_new_tokens: int = 64
    """New tokens per candidate at most."""
    temperature: float = 1.0
    """Sampling temperature of the candidates (diversity makes pairs informative)."""
    top_p: float = 1.0
    """Nucleus sampling of the candidates."""
    pairs: Literal["best_vs_worst", "all"] = "best_vs_worst"
    """best_vs_worst: one pair per prompt, its highest- against its lowest-scored candidate;
    all: every two candidates whose scores differ by more than min_gap."""
    min_gap: float = 0.0
    """A pair needs its scores to differ by more than this (equal scores teach nothing)."""
    refresh_reference: bool = False
    """Make each round's policy the next round's DPO reference (iterative DPO); off = the
    initial policy stays the reference (online DPO)."""
    offline: str | None = None
    """Semi-online: a file of offline preference pairs (any format `prefline import`
    reads) mixed into every round."""
    offline_fraction: float = 0.5
    """Offline pairs added per round, as a share of the round's online pairs."""
    monitor_every: int = 1
    """Measure the over-optimisation monitor every N rounds (and before the first; 0 =
    off)."""
    monitor_prompts: str = "bundled:dev"
    """Fixed prompts of the monitor (held out from training). The monitor can stop training
    (kl_budget, gold_patience), so it reads the dev split, never eval."""
    monitor_limit: int = 16
    """Monitor prompts used (the first N)."""
    kl_budget: float | None = None
    """Stop when the monitor's KL to the initial policy passes this (nats per response)."""
    gold_patience: int = 2
    """Stop when the gold score stays below its best for this many measurements."""
    seed: int = 0
    """Seeds prompt draws and sampling (round r samples with seed·1000 + r)."""
    resume: bool = False
    """Continue the run in --out after its last finished round (same settings; only
    rounds may grow); an unfinished round's DPO resumes from its checkpoint."""
    dpo: DPOConfig = dataclasses.field(
        default_factory=lambda: DPOConfig(val_fraction=0.0, test_fraction=0.0))
    """DPO settings of each round (loss, beta, max_length, LoRA, train.*); its snapshot,
    data and model are set by the round."""

    def __post_init__(self) -> None:
        if (self.reward is None) == (self.judge is None):
            raise PreflineError("give exactly one labeller: reward or judge", field="reward")
        if self.judge is not None:
            parse_spec(self.judge)
        if self.reward is not None:
            check_scorer_spec(self.reward, "reward")
        if self.gold is not None:
            check_scorer_spec(self.gold, "gold")
        check_at_least(self, 1, "rounds", "k", "max_new_tokens", "monitor_limit",
                       "gold_patience")
        if self.k < 2:
            raise PreflineError("k must be at least 2 to make pairs", field="k")
        check_sampling(self.temperature, self.top_p)
        for name in ("prompts_per_round", "monitor_every"):
            if getattr(self, name) < 0:
                raise PreflineError(f"{name} must be 0 or more", field=name)
        if self.min_gap < 0:
            raise PreflineError("min_gap must be 0 or more", field="min_gap")
        if not 0 <= self.offline_fraction <= 10:
            raise PreflineError("offline_fraction must be in [0, 10]", field="offline_fraction")
        if self.kl_budget is not None and self.kl_budget <= 0:
            raise PreflineError("kl_budget must be positive (or unset)", field="kl_budget")
        if self.dpo.lora:
            raise PreflineError("online DPO trains full weights in this version (lora off)",
                                field="lora")
        if self.dpo.kto:
            raise PreflineError("online DPO trains on pairs; kto is not a paired loss",
                                field="loss")
