"""What ``prefline demo`` runs: the stage configs of the loop, nested in one config.

The demo is the loop a user would run by hand — generate, judge (the annotator: a label
budget, label noise), import, snapshot, audit, train reward, best-of-N pairs from the reward
model, train DPO on them, evaluate, the over-optimisation curve — so its config *is* those
stages' configs
(``cfg.reward`` is a :class:`~prefline.train.reward.RewardConfig`, ``cfg.dpo`` a
:class:`~prefline.train.policy_config.DPOConfig`, ...), with the demo's own defaults. The
data source of each stage (the snapshot it trains on, the models it compares) is filled in
by the pipeline, which passes each stage's typed result to the next.

The full run is sized for ≤ 15 minutes on a 2-core CPU (``docs/demo.md`` has measured
stage times); the quick run (``--quick``, ``configs/demo-quick.toml``) uses tiny random
models built in code and a handful of prompts, so CI exercises every stage in seconds.
Only the *training* side is tuned, and only on the bundled ``dev`` prompts
(``eval_split="dev"``); the ``eval`` split is scored once per released configuration. The
evaluation (prompts, judges, sampling) is fixed up front and identical in both runs except
for size. The labelling judge (``rules``) labels the training pairs; the headline is a judge
that labelled nothing and was written independently of it (``rubric``); the labelling judge
and the proxy reward model are reported beside it as what they are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from prefline.base.errors import PreflineError
from prefline.evaluate.policy_config import PolicyEvalConfig
from prefline.store.snapshot_config import SnapshotConfig
from prefline.train.policy_config import DPOConfig
from prefline.train.reward_config import RewardConfig
from prefline.train.train_config import TrainConfig

JUDGE_SPEC = "rules"
"""The principle judge labels the demo's training pairs (the annotator)."""
HEADLINE_JUDGE = "rubric"
"""The demo's headline: the independent rubric, a judge that produced no training label."""


@dataclass(frozen=True)
class CandidateConfig:
    """How the reference policy samples the candidates that the judge compares."""

    k: int = 4
    """Candidates sampled per train prompt (every pair of distinct ones is judged)."""
    max_new_tokens: int = 48
    """New tokens per candidate at most."""
    temperature: float = 0.9
    """Sampling temperature."""
    top_p: float = 1.0
    """1.0 = plain temperature sampling (top-p sorts the 49k-token vocabulary every step)."""
    batch_size: int = 256
    """Sequences per generate call: decoding a 135M model on CPU is per-op overhead bound,
    so wide batches are several times faster per token."""

    def __post_init__(self) -> None:
        for name in ("k", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise PreflineError(f"{name} must be at least 1", field=name)
        if self.k < 2:
            raise PreflineError("k must be at least 2: the judge compares pairs", field="k")


def _reward() -> RewardConfig:
    # The snapshot's test split is the reward model's held-out set (evaluated after training).
    # 3 epochs: the label budget leaves ~250 decisive pairs, ~15 steps an epoch.
    return RewardConfig(max_length=256, train=TrainConfig(
        lr=5e-5, epochs=3, batch_size=16, weight_decay=0.01, early_stopping_patience=2))


def _dpo() -> DPOConfig:
    # The data is the reward model's best-vs-worst pair per train prompt (the bon stage's
    # file): one pair per prompt is already selected, so every pair trains. No test split
    # is cut from it (test_fraction 0): the policy is judged on the held-out eval prompts.
    return DPOConfig(loss="sigmoid", beta=0.1, lora=True, lora_r=16, lora_alpha=32,
                     max_length=256, export="adapter", pairs="all", test_fraction=0.0,
                     train=TrainConfig(lr=2e-4, epochs=4, batch_size=8, warmup_ratio=0.1))


def _evaluate() -> PolicyEvalConfig:
    # policy/baseline/prompts/reward are filled in by the pipeline from earlier stages.
    # The labelling judge is scored too, as "labelling": never the headline.
    return PolicyEvalConfig(policy="(trained policy)", baseline="(reference policy)",
                            judge=HEADLINE_JUDGE, labelling_judge=JUDGE_SPEC,
                            max_new_tokens=48, temperature=0.7, seed=1, batch_size=256)


@dataclass(frozen=True)
class DemoConfig:
    """The whole loop on embedded defaults; every stage's settings nest under its name."""

    quick: bool = False
    """Tiny random models and a few prompts: exercises every stage in seconds (not a result)."""
    policy_model: str | None = None
    """Causal LM to improve (None: the embedded SmolLM2-135M-Instruct)."""
    reward_backbone: str | None = None
    """Reward-model encoder (None: the embedded all-MiniLM-L6-v2)."""
    train_prompts: int | None = None
    """How many bundled train-split prompts to sample candidates for (None: all 210). Two
    runs on 140 prompts gave 60.1% and 53.6%: too little DPO data for a stable result."""
    eval_split: Literal["dev", "eval"] = "eval"
    """Bundled split the evaluation scores: dev (42 prompts) while tuning training settings;
    eval (84) once per released configuration."""
    eval_prompts: int | None = None
    """How many prompts of eval_split to evaluate on (None: all)."""
    seed: int = 0
    """Seed of candidate sampling, of the label budget's draw and noise, and of the demo's
    tiny models."""
    label_budget: int | None = 600
    """Pairs the annotator (the labelling judge, rules) labels: drawn (seeded) from every pair
    of distinct candidates of the train prompts (~1,260 with K=4); None: all of them. The
    reward model learns from these labels only."""
    label_noise: float = 0.15
    """Share of the annotator's decisive labels flipped (seeded), as human raters disagree;
    the label stage records how many were flipped."""
    overopt_n: tuple[int, ...] = (1, 2, 4, 8)
    """The over-optimisation curve: best-of-N under the proxy reward model on the evaluation
    prompts, for each N here, judged like the DPO policy (KL bound log N − (N−1)/N)."""
    overopt_seed: int = 7
    """Seed of the curve's samples (1 + max N per prompt: a reference sample to compare with,
    and the pool each N takes its first N candidates from)."""
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    snapshot: SnapshotConfig = field(default_factory=lambda: SnapshotConfig(
        name="demo", replace=True, aggregate="majority", ties="drop", test_fraction=0.1))
    reward: RewardConfig = field(default_factory=_reward)
    dpo: DPOConfig = field(default_factory=_dpo)
    evaluate: PolicyEvalConfig = field(default_factory=_evaluate)

    def __post_init__(self) -> None:
        if self.evaluate.judge == JUDGE_SPEC or self.evaluate.labelling_judge != JUDGE_SPEC:
            raise PreflineError(f"the demo's training pairs are labelled by {JUDGE_SPEC!r}: it "
                                "is the evaluation's labelling_judge, never its headline judge",
                                field="evaluate.judge")
        for name in ("train_prompts", "eval_prompts", "label_budget"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PreflineError(f"{name} must be at least 1", field=name)
        if not 0 <= self.label_noise < 0.5:
            raise PreflineError("label_noise must be in [0, 0.5): at 0.5 the labels carry no "
                                "preference", field="label_noise")
        if not self.overopt_n or min(self.overopt_n) < 1:
            raise PreflineError("overopt_n must list N values of at least 1", field="overopt_n")


def quick_config() -> DemoConfig:
    """Tiny random models, a few prompts (mirrored by ``configs/demo-quick.toml``)."""
    base = DemoConfig()
    return dataclasses.replace(
        base, quick=True, train_prompts=14, eval_prompts=7, label_budget=30,
        overopt_n=(1, 2),
        candidates=CandidateConfig(k=3, max_new_tokens=12, batch_size=48),
        reward=dataclasses.replace(base.reward, max_length=64, train=dataclasses.replace(
            base.reward.train, batch_size=8)),
        dpo=dataclasses.replace(base.dpo, lora_r=4, lora_alpha=8, max_length=64,
                                train=dataclasses.replace(base.dpo.train, epochs=1,
                                                          batch_size=4)),
        evaluate=dataclasses.replace(base.evaluate, max_new_tokens=12, batch_size=48))
