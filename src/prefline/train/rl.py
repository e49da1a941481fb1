"""RLOO and GRPO: ``run(cfg: RLConfig, ctx) -> OnlineRLResult`` (``train rloo|grpo``).

Each generation step samples k completions per prompt with the current policy
(:mod:`prefline.train.rollout`), scores them (reward model, judge or Python function:
:mod:`prefline.train.rl_rewards`), optionally subtracts β·KL from the rewards (RLOO),
turns rewards into advantages against the prompt's own group, and takes ``iterations``
clipped policy-gradient steps on that rollout (``prefline.losses.online``), with β·KL per
token in the loss for GRPO. One engine (train/engine.py) runs it all: accumulation,
precision, checkpoints, resume and DDP. The caller records the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from prefline.losses.online import (
    clipped_surrogate,
    group_advantages,
    importance_ratio,
    kl_per_token,
    reduce_loss,
)
from prefline.store.context import Context
from prefline.train.rl_config import GRPOConfig, RLConfig, RLOOConfig
from prefline.train.rl_rewards import make_scorer
from prefline.train.rl_task import (
    OnlineRLResult,
    OnlineTask,
    Reduce,
    fit_online,
    load_and_fit,
)

__all__ = ["GRPOConfig", "OnlineRLResult", "RLConfig", "RLOOConfig", "fit_rl", "run"]


class RLTask(OnlineTask):
    """RLOO / GRPO on the engine (see :class:`~prefline.train.rl_task.OnlineTask`)."""

    def __init__(self, cfg: RLConfig, tokenizer: Any, lm: Any, ref: nn.Module | None, *,
                 run_dir: Path, device: torch.device | None = None) -> None:
        self.rl = cfg
        kl_reward = cfg.beta > 0 and cfg.kl_in == "reward"
        super().__init__(cfg.rollout, tokenizer, lm, make_scorer(cfg.reward, device), ref,
                         seed=cfg.train.seed, run_dir=run_dir, needs_old=kl_reward,
                         device=device)

    def finish(self, batches: list[dict[str, Any]], reduce: Reduce, gen: int) -> None:
        cfg, k = self.rl, self.cfg.k
        kl = [self.sequence_kl(b, cfg.kl_estimator) for b in batches] \
            if "ref_logps" in batches[0] and "old_logps" in batches[0] else None
        for i, b in enumerate(batches):
            rewards = b["rewards"]
            if cfg.kl_in == "reward" and kl is not None:
                rewards = rewards - cfg.beta * kl[i]
            b["advantages"] = group_advantages(rewards.view(-1, k), cfg.advantage).view(-1)
        # The reported KL is k1 (nats per completion) whatever estimator trains.
        shown = kl if kl is None or cfg.kl_estimator == "k1" else \
            [self.sequence_kl(b) for b in batches]
        self.stats = self.rollout_stats(batches, reduce, shown)

    def count(self, batch: dict[str, Any]) -> float:
        if self.rl.normalisation == "token" and self.rl.ratio_level == "token":
            return float(batch["rollout"].completion_mask.sum())
        return float(batch["rollout"].rows())

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, float,
                                                                      dict[str, float]]:
        cfg, r = self.rl, batch["rollout"]
        logps, _ = model(r)
        mask = r.completion_mask.to(logps.device)
        old = batch.get("old_logps")
        old = logps.detach() if old is None else old.to(logps.device)
        adv = batch["advantages"].to(logps.device)
        per, clipped = clipped_surrogate(logps, old, adv, mask, cfg.eps_low, cfg.eps_high,
                                         cfg.ratio_level)
        if cfg.beta > 0 and cfg.kl_in == "loss":
            kl = kl_per_token(logps, batch["ref_logps"].to(logps.device), cfg.kl_estimator)
            if cfg.kl_bias_correction:
                kl = kl * importance_ratio(logps, old, mask).detach()
            if cfg.ratio_level == "sequence":
                kl = (kl * mask).sum(-1, keepdim=True)
            per = per + cfg.beta * kl
        total, n = reduce_loss(per, mask, cfg.normalisation, self.cfg.max_new_tokens)
        clip_share = float((clipped * mask).sum() / mask.sum().clamp(min=1)) \
            if clipped.shape == mask.shape else float(clipped.mean())
        metrics = {**self.metric_sums(n), "clipped": clip_share * n}
        if "kl" not in self.stats and "ref_logps" in batch:
            # KL (k1, nats per completion) at the current weights; a per-completion mean
            # when the count is completions, token-weighted under token normalisation.
            k1 = kl_per_token(logps.detach(), batch["ref_logps"].to(logps.device), "k1")
            metrics["kl"] = float((k1 * mask).sum()) * n / r.rows()
        return total, n, metrics


def run(cfg: RLConfig, ctx: Context) -> OnlineRLResult:
    """Load the policy (the embedded SmolLM2 by default), train, export."""
    return load_and_fit(cfg, ctx, fit_rl)


def fit_rl(cfg: RLConfig, ctx: Context, lm: Any, tokenizer: Any, *,
           base_model: str) -> OnlineRLResult:
    """Train an already loaded ``lm`` (tests and benchmarks pass tiny or shared models)."""
    return fit_online(cfg, ctx, lm, tokenizer, base_model=base_model, method=cfg.method,
                      make_task=lambda ref, out: RLTask(cfg, tokenizer, lm, ref, run_dir=out,
                                                        device=ctx.torch_device))


