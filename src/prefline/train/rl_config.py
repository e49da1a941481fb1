"""Settings of online RL (``train rloo``, ``train grpo``, ``train ppo``), free of torch.

Composition: every method nests the same :class:`RolloutConfig` (what is sampled and how
often it is reused) and :class:`RewardSource` (what scores it), plus the engine's
``TrainConfig``. RLOO and GRPO are one algorithm family with different defaults
(:class:`RLOOConfig`, :class:`GRPOConfig` only change defaults of :class:`RLConfig`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from prefline.base.errors import PreflineError
from prefline.generate.backend import parse_backend
from prefline.generate.best_of_n import check_scorer_spec
from prefline.train.train_config import TrainConfig

# A few optimisation defaults that suit online RL better than preference training's.
_RL_TRAIN = TrainConfig(lr=1e-6, batch_size=4, warmup_ratio=0.0, schedule="constant",
                        max_steps=100)


@dataclass(frozen=True)
class RolloutConfig:
    """What the policy samples each generation step."""

    prompts: str | None = None
    """Prompts file (JSONL: a "prompt" text or chat "messages" per line; other fields go to a
    reward function as columns); none = the bundled prompts' train split."""
    k: int = 4
    """Completions sampled per prompt (the group of RLOO/GRPO; PPO may use 1)."""
    max_new_tokens: int = 64
    """Most tokens sampled per completion."""
    temperature: float = 1.0
    """Sampling temperature (the log-probs of the loss use the same one)."""
    max_prompt_tokens: int = 512
    """Prompts longer than this are cut from the left."""
    iterations: int = 1
    """Optimizer steps per generation (μ): >1 reuses a rollout for several clipped
    updates."""
    backend: str = "hf"
    """Generation engine: hf (in-process, on the policy itself) or vllm (a vLLM engine
    given the policy's weights after every update; needs vLLM and a GPU)."""

    def __post_init__(self) -> None:
        if parse_backend(self.backend)[0] == "openai":
            raise PreflineError("rollouts sample with hf or vllm: a server cannot take the "
                                "policy's new weights", field="backend")
        for name in ("k", "max_new_tokens", "iterations", "max_prompt_tokens"):
            if getattr(self, name) < 1:
                raise PreflineError(f"{name} must be at least 1", field=name)
        if self.temperature <= 0:
            raise PreflineError("temperature must be positive (training samples)",
                                field="temperature")


@dataclass(frozen=True)
class RewardSource:
    """What scores a completion: exactly one of reward_model, judge, reward_fn."""

    reward_model: str | None = None
    """Reward model folder saved by `prefline train reward` (a single model or an
    ensemble)."""
    uncertainty_penalty: float = 0.0
    """λ: an ensemble's reward is mean - λ·std across members (0 = the mean)."""
    judge: str | None = None
    """Judge spec (rules, reward:DIR, openai:URL, a local LM): a completion's reward is its
    share of wins against the other completions of its prompt (ties count half)."""
    reward_fn: str | None = None
    """Python reward as module:function, called as f(prompts, completions,
    completion_ids=..., **columns) -> one float per completion (verifiable rewards: checked
    answers, format rules)."""

    def __post_init__(self) -> None:
        given = [n for n in ("reward_model", "judge", "reward_fn") if getattr(self, n)]
        if len(given) > 1:
            raise PreflineError("give exactly one of reward_model, judge or reward_fn (got "
                                f"{', '.join(given)})", field=given[-1])
        if self.reward_fn and ":" not in self.reward_fn:
            raise PreflineError(f"reward_fn must be module:function, got {self.reward_fn!r}",
                                field="reward_fn")
        if self.uncertainty_penalty < 0:
            raise PreflineError("uncertainty_penalty must be 0 or more",
                                field="uncertainty_penalty")
        if self.uncertainty_penalty and not self.reward_model:
            raise PreflineError("uncertainty_penalty needs an ensemble reward_model",
                                field="uncertainty_penalty")

    def check(self) -> None:
        """A training run needs one source; checked when a stage starts, before any model
        loads (like DPO's snapshot or data), so that defaults and `config show` work."""
        if not (self.reward_model or self.judge or self.reward_fn):
            raise PreflineError("no reward: give one of reward_model, judge or reward_fn "
                                "(e.g. --reward-fn prefline.train.rl_rewards:exact_answer)",
                                field="reward_fn")

    def spec(self) -> str:
        """The source as one string (lineage, summaries)."""
        if self.reward_model:
            lam = f" - {self.uncertainty_penalty}·std" if self.uncertainty_penalty else ""
            return f"reward_model:{self.reward_model}{lam}"
        return f"judge:{self.judge}" if self.judge else f"reward_fn:{self.reward_fn}"


@dataclass(frozen=True)
class MonitorConfig:
    """The over-optimisation monitor (:mod:`prefline.train.monitor`) of every online run."""

    monitor_every: int = 10
    """Measure proxy reward, KL, length, distinct-n (and gold) every N optimizer steps, at
    the end of each pass over the prompts and before the first step (0 = off)."""
    monitor_prompts: str | None = None
    """Fixed prompts of the monitor (JSONL like prompts; their other fields go to a reward
    function); none = the bundled dev split when training on the bundled prompts, else the
    training prompts."""
    monitor_limit: int = 16
    """Monitor prompts used (the first N)."""
    gold: str | None = None
    """Held-out judge or reward for the monitor (never trains): reward-model folder,
    python:MODULE:FUNC or a judge spec; its mean score is plotted against KL."""
    kl_budget: float | None = None
    """Stop when the monitor's KL to the initial policy passes this (nats per response)."""
    gold_patience: int = 2
    """Stop when the gold score stays below its best for this many measurements."""

    def __post_init__(self) -> None:
        if self.monitor_every < 0:
            raise PreflineError("monitor_every must be 0 or more", field="monitor_every")
        for name in ("monitor_limit", "gold_patience"):
            if getattr(self, name) < 1:
                raise PreflineError(f"{name} must be at least 1", field=name)
        if self.kl_budget is not None and self.kl_budget <= 0:
            raise PreflineError("kl_budget must be positive (or unset)", field="kl_budget")
        if self.gold is not None:
            check_scorer_spec(self.gold, "gold")


@dataclass(frozen=True)
class RLConfig:
    """RLOO / GRPO: k completions per prompt, advantages against the prompt's own group."""

    model: str | None = None
    """Policy to start from, and the reference: hub id or folder; none = the embedded
    SmolLM2-135M-Instruct."""
    rollout: RolloutConfig = dataclasses.field(default_factory=RolloutConfig)
    """Sampling: prompts, k, lengths, temperature, reuse."""
    reward: RewardSource = dataclasses.field(default_factory=RewardSource)
    """What scores completions."""
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    """The over-optimisation monitor: every N steps, early stop on KL or gold."""
    advantage: Literal["rloo", "grpo", "dr_grpo"] = "grpo"
    """rloo: reward minus the mean of the other k-1; grpo: (reward - group mean) / group
    std; dr_grpo: reward - group mean (no std scaling)."""
    beta: float = 0.04
    """KL weight towards the reference (0 = no reference model is kept)."""
    kl_in: Literal["loss", "reward"] = "loss"
    """loss: β·KL per token added to the loss (GRPO); reward: β·Σ KL subtracted from each
    completion's reward before advantages (RLOO)."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """k1 = log π/π_ref, k2 = ½(log π/π_ref)², k3 = π_ref/π - log π_ref/π - 1."""
    kl_bias_correction: bool = True
    """Weight the in-loss KL by the importance ratio (the tokens came from the old policy)."""
    eps_low: float = 0.2
    """Clip the importance ratio below at 1 - eps_low."""
    eps_high: float = 0.28
    """Clip it above at 1 + eps_high (DAPO's clip-higher; = eps_low for symmetric PPO)."""
    ratio_level: Literal["token", "sequence"] = "token"
    """token: one ratio per token (GRPO); sequence: one per completion from summed
    log-probs (TRL's RLOO)."""
    normalisation: Literal["sequence", "token", "dr_grpo"] = "sequence"
    """sequence: mean over each completion's tokens, then over completions; token: over all
    tokens of the step; dr_grpo: token sum / (completions × max_new_tokens)."""
    train: TrainConfig = dataclasses.field(default_factory=lambda: _RL_TRAIN)
    """Engine settings; batch_size counts prompts (each with k completions)."""

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise PreflineError("beta must be 0 or more", field="beta")
        for name in ("eps_low", "eps_high"):
            if not 0 < getattr(self, name) < 1:
                raise PreflineError(f"{name} must be in (0, 1)", field=name)
        if self.rollout.k < 2:
            raise PreflineError("RLOO and GRPO compare completions of one prompt: k must be "
                                "at least 2", field="k")

    @property
    def method(self) -> str:
        return "rloo" if self.advantage == "rloo" else "grpo"


@dataclass(frozen=True)
class GRPOConfig(RLConfig):
    """GRPO (Shao et al. 2024): group-normalised advantages, k3 KL in the loss."""


@dataclass(frozen=True)
class RLOOConfig(RLConfig):
    """RLOO (Ahmadian et al. 2024): leave-one-out baseline, k1 KL in the reward, one
    importance ratio per completion."""

    advantage: Literal["rloo", "grpo", "dr_grpo"] = "rloo"
    beta: float = 0.05
    kl_in: Literal["loss", "reward"] = "reward"
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"
    eps_high: float = 0.2
    ratio_level: Literal["token", "sequence"] = "sequence"


@dataclass(frozen=True)
class PPOConfig:
    """PPO for language models (Ziegler et al. 2019): per-token KL penalty in the reward,
    a value model, GAE, clipped policy and value losses."""

    model: str | None = None
    """Policy to start from, and the reference: hub id or folder; none = the embedded
    SmolLM2-135M-Instruct."""
    rollout: RolloutConfig = dataclasses.field(default_factory=lambda: RolloutConfig(k=1))
    """Sampling: prompts, k, lengths, temperature, reuse (iterations = PPO epochs)."""
    reward: RewardSource = dataclasses.field(default_factory=RewardSource)
    """What scores completions."""
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    """The over-optimisation monitor: every N steps, early stop on KL or gold."""
    value_model: Literal["head", "critic"] = "head"
    """head: a value head on the policy's last hidden state (shared body); critic: a
    separate copy of the base model with its own value head."""
    beta: float = 0.05
    """Initial per-token KL penalty coefficient."""
    kl_target: float | None = 6.0
    """Adaptive KL controller target (nats per completion); none = fixed beta."""
    kl_horizon: float = 10_000.0
    """Controller horizon (completions): how fast beta adapts."""
    gamma: float = 1.0
    """Discount per token."""
    lam: float = 0.95
    """GAE λ."""
    eps: float = 0.2
    """Policy ratio clip."""
    value_clip: float = 0.2
    """Value clip around the rollout's values."""
    vf_coef: float = 0.1
    """Weight of the value loss."""
    whiten_rewards: bool = True
    """Whiten the scores over the step (all processes), keeping their mean."""
    train: TrainConfig = dataclasses.field(default_factory=lambda: _RL_TRAIN)
    """Engine settings; batch_size counts prompts (each with k completions)."""

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise PreflineError("beta must be 0 or more", field="beta")
        if self.kl_target is not None and self.kl_target <= 0:
            raise PreflineError("kl_target must be positive (or unset)", field="kl_target")
        for name in ("eps", "value_clip"):
            if not 0 < getattr(self, name) < 1:
                raise PreflineError(f"{name} must be in (0, 1)", field=name)
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise PreflineError("gamma and lam must be in [0, 1]", field="gamma")
        if self.vf_coef < 0 or self.kl_horizon <= 0:
            raise PreflineError("vf_coef must be 0 or more and kl_horizon positive",
                                field="vf_coef")
