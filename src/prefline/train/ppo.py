"""PPO, the classic RLHF recipe: ``run(cfg: PPOConfig, ctx) -> OnlineRLResult`` (``train ppo``).

Per generation step (Ziegler et al. 2019; Ouyang et al. 2022): sample completions, score
them (whitened over the step, keeping the mean, when ``whiten_rewards``), build per-token
rewards ``-β·(log π_old - log π_ref)`` with the score added on each completion's last token,
estimate advantages with GAE on the value model's values (whitened over the step), then take
``iterations`` steps of the clipped policy loss plus ``vf_coef`` × the clipped value loss.
β follows the adaptive KL controller when ``kl_target`` is set; its value for each
generation step is kept in ``<run>/kl_coef.json`` so a resumed run continues with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prefline.base.distributed import rank
from prefline.losses.online import (
    AdaptiveKL,
    clipped_surrogate,
    gae,
    kl_per_token,
    masked_stats,
    reduce_loss,
    value_loss,
    whiten,
)
from prefline.store.context import Context
from prefline.train.rl_config import PPOConfig
from prefline.train.rl_rewards import make_scorer
from prefline.train.rl_task import (
    OnlineRLResult,
    OnlineTask,
    Reduce,
    fit_online,
    load_and_fit,
)

__all__ = ["PPOConfig", "PPOTask", "fit_ppo", "run"]


class PPOTask(OnlineTask):
    """PPO on the engine (see :class:`~prefline.train.rl_task.OnlineTask`)."""

    def __init__(self, cfg: PPOConfig, tokenizer: Any, lm: Any, ref: nn.Module | None, *,
                 run_dir: Path, device: torch.device | None = None) -> None:
        self.ppo = cfg
        super().__init__(cfg.rollout, tokenizer, lm, make_scorer(cfg.reward, device), ref,
                         seed=cfg.train.seed, run_dir=run_dir, needs_old=True, device=device)
        self.betas = self._load_betas() if cfg.train.resume else {}
        self.betas.setdefault("0", cfg.beta)

    def _beta_file(self) -> Path:
        return self.run_dir / "kl_coef.json"

    def _load_betas(self) -> dict[str, float]:
        path = self._beta_file()
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def _token_rewards(self, b: dict[str, Any], scores: Tensor, beta: float) -> Tensor:
        """``-β·k1`` per token, the score added on each completion's last token."""
        mask = b["rollout"].completion_mask
        rewards = -beta * kl_per_token(b["old_logps"], b["ref_logps"], "k1") * mask \
            if "ref_logps" in b else torch.zeros_like(mask)
        last = (mask.sum(-1).long() - 1).clamp(min=0)
        return rewards.index_put((torch.arange(len(last), device=last.device), last),
                                 scores.to(rewards.device), accumulate=True)

    def finish(self, batches: list[dict[str, Any]], reduce: Reduce, gen: int) -> None:
        cfg = self.ppo
        beta = float(self.betas[str(gen)])
        ones = [torch.ones_like(b["rewards"]) for b in batches]
        mean, var = masked_stats(torch.cat([b["rewards"] for b in batches]), torch.cat(ones),
                                 reduce)
        masks = [b["rollout"].completion_mask for b in batches]
        for b, mask in zip(batches, masks, strict=True):
            scores = whiten(b["rewards"], torch.ones_like(b["rewards"]), mean, var,
                            shift_mean=False) if cfg.whiten_rewards else b["rewards"]
            adv, ret = gae(self._token_rewards(b, scores, beta), b["old_values"], mask,
                           cfg.gamma, cfg.lam)
            b["advantages"], b["returns"] = adv, ret
        a_mean, a_var = masked_stats(torch.cat([b["advantages"].flatten() for b in batches]),
                                     torch.cat([m.flatten() for m in masks]), reduce)
        for b, mask in zip(batches, masks, strict=True):
            b["advantages"] = whiten(b["advantages"], mask, a_mean, a_var)
        kl = [self.sequence_kl(b) for b in batches] if "ref_logps" in batches[0] else None
        self.stats = {**self.rollout_stats(batches, reduce, kl), "beta": beta}
        nxt = beta
        if cfg.kl_target is not None and kl is not None:
            n = reduce([float(sum(b["rewards"].numel() for b in batches))])[0]
            nxt = AdaptiveKL(beta, cfg.kl_target, cfg.kl_horizon).update(self.stats["kl"], n)
        self.betas[str(gen + self.cfg.iterations)] = nxt
        if rank() == 0:
            self._beta_file().write_text(json.dumps(self.betas))

    def count(self, batch: dict[str, Any]) -> float:
        return float(batch["rollout"].completion_mask.sum())

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, float,
                                                                      dict[str, float]]:
        cfg, r = self.ppo, batch["rollout"]
        logps, values = model(r)
        assert values is not None  # PPO's module always has a value model
        dev = logps.device
        mask = r.completion_mask.to(dev)
        pg, clipped = clipped_surrogate(logps, batch["old_logps"].to(dev),
                                        batch["advantages"].to(dev), mask, cfg.eps, cfg.eps)
        vl = value_loss(values, batch["old_values"].to(dev), batch["returns"].to(dev),
                        cfg.value_clip)
        total, n = reduce_loss(pg + cfg.vf_coef * vl, mask, "token")
        metrics = self.metric_sums(n)
        metrics["value_loss"] = float((vl.detach() * mask).sum())
        metrics["clipped"] = float((clipped * mask).sum())
        return total, n, metrics


def run(cfg: PPOConfig, ctx: Context) -> OnlineRLResult:
    """Load the policy (the embedded SmolLM2 by default), train, export."""
    return load_and_fit(cfg, ctx, fit_ppo)


def fit_ppo(cfg: PPOConfig, ctx: Context, lm: Any, tokenizer: Any, *,
            base_model: str) -> OnlineRLResult:
    """Train an already loaded ``lm`` with PPO."""
    return fit_online(cfg, ctx, lm, tokenizer, base_model=base_model, method="ppo",
                      make_task=lambda ref, out: PPOTask(cfg, tokenizer, lm, ref, run_dir=out,
                                                         device=ctx.torch_device))
