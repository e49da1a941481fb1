"""Online policy-gradient losses (RLOO, GRPO, Dr. GRPO, PPO) as pure tensor functions.

Shapes: ``B`` completions, ``T`` completion tokens (right-padded), ``P`` prompts with ``k``
completions each (``B = P·k``, a prompt's completions adjacent). ``logps``/``old_logps``/
``ref_logps`` are per-token log-probs in nats, shape ``(B, T)``; ``mask`` is 1.0 on
completion tokens (the end-of-turn token included) and 0.0 on padding.

Each reduction returns ``(loss_sum, count)`` rather than a mean, because the training engine
sums micro-batch losses and divides by the global count of the optimizer step: that makes
gradient accumulation and 2 processes exactly equal to one large batch whatever the
normalisation (:data:`NORMALISATIONS`).

The estimators and losses follow the papers: RLOO (Ahmadian et al. 2024), GRPO (Shao et al.
2024), Dr. GRPO (Liu et al. 2025), PPO for language models (Ziegler et al. 2019; Schulman et
al. 2017; GAE: Schulman et al. 2016); KL estimators k1/k2/k3 as in Schulman's note
"Approximating KL divergence" (2020).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from prefline.base.errors import PreflineError

ADVANTAGES = ("rloo", "grpo", "dr_grpo")
"""Group baselines: leave-one-out mean; group mean over group std; group mean only."""
KL_ESTIMATORS = ("k1", "k2", "k3")
NORMALISATIONS = ("sequence", "token", "dr_grpo")
"""sequence: mean over each completion's tokens, then over completions (GRPO); token: over
every token of the step (DAPO); dr_grpo: token sum over (completions × max new tokens)."""
RATIO_LEVELS = ("token", "sequence")


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise PreflineError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}",
                            field=name)


def group_advantages(rewards: Tensor, kind: str = "grpo", eps: float = 1e-4) -> Tensor:
    """Advantages of ``rewards`` ``(P, k)`` against their own prompt's group, ``(P, k)``.

    rloo: ``r_i - mean_{j≠i} r_j``; grpo: ``(r_i - mean) / (std + eps)`` with the unbiased
    std (as TRL); dr_grpo: ``r_i - mean`` (no std scaling: Dr. GRPO's fix of the bias that
    favours groups with little spread)."""
    _check("advantage", kind, ADVANTAGES)
    k = rewards.shape[-1]
    if k < 2:
        raise PreflineError("group advantages need at least 2 completions per prompt", field="k")
    mean = rewards.mean(-1, keepdim=True)
    if kind == "rloo":
        return rewards - (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
    if kind == "dr_grpo":
        return rewards - mean
    return (rewards - mean) / (rewards.std(-1, keepdim=True) + eps)


def kl_per_token(logps: Tensor, ref_logps: Tensor, estimator: str = "k3") -> Tensor:
    """Per-token estimate of KL(π‖π_ref) from tokens sampled from π, ``(B, T)``.

    With ``d = ref_logps - logps``: k1 = ``-d`` (unbiased, can be negative), k2 = ``d²/2``,
    k3 = ``exp(d) - d - 1`` (unbiased and never negative; GRPO's)."""
    _check("kl_estimator", estimator, KL_ESTIMATORS)
    d = ref_logps - logps
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d * d
    return torch.exp(d) - d - 1


def importance_ratio(logps: Tensor, old_logps: Tensor, mask: Tensor,
                     level: str = "token") -> Tensor:
    """``exp(logp - old)`` per token ``(B, T)`` (level token), or ``exp(Σ_t (logp_t - old_t))``
    per completion ``(B, 1)`` (level sequence); 1 on padding."""
    _check("ratio_level", level, RATIO_LEVELS)
    log_ratio = (logps - old_logps) * mask
    if level == "sequence":
        log_ratio = log_ratio.sum(-1, keepdim=True)
    return torch.exp(log_ratio)


def clipped_surrogate(logps: Tensor, old_logps: Tensor, advantages: Tensor, mask: Tensor,
                      eps_low: float = 0.2, eps_high: float = 0.2,
                      level: str = "token") -> tuple[Tensor, Tensor]:
    """PPO's clipped objective, negated: ``-min(ρA, clip(ρ, 1-eps_low, 1+eps_high)A)``.

    ``advantages``: ``(B,)`` per completion or ``(B, T)`` per token. ``level`` token: one
    ratio ``ρ_t = exp(logp_t - old_t)`` per token, the loss is ``(B, T)``; sequence: one ratio
    ``exp(Σ_t (logp_t - old_t))`` per completion (TRL's RLOO), the loss is ``(B, 1)``.
    Returns ``(loss, clipped)``: clipped is 1.0 where the clip took effect (for logging)."""
    adv = advantages if advantages.dim() == 2 else advantages[:, None]
    ratio = importance_ratio(logps, old_logps, mask, level)
    clipped_ratio = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    loss = -torch.min(ratio * adv, clipped_ratio * adv)
    clipped = ((ratio * adv) > (clipped_ratio * adv)).to(logps.dtype)
    return loss, clipped.detach()


def reduce_loss(per_token: Tensor, mask: Tensor, normalisation: str = "sequence",
                max_new_tokens: int | None = None) -> tuple[Tensor, float]:
    """``(loss_sum, count)`` of a ``(B, T)`` (or ``(B, 1)`` sequence-level) loss.

    sequence: ``Σ_b mean_t`` with count B; token: ``Σ_{b,t}`` with count = tokens; dr_grpo:
    ``Σ_{b,t} / max_new_tokens`` with count B. A ``(B, 1)`` loss is already one value per
    completion: its sum, count B (every normalisation)."""
    _check("normalisation", normalisation, NORMALISATIONS)
    b = float(per_token.shape[0])
    if per_token.shape[-1] == 1 and mask.shape[-1] != 1:
        return per_token.sum(), b
    masked = per_token * mask
    if normalisation == "sequence":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).sum(), b
    if normalisation == "token":
        return masked.sum(), float(mask.sum())
    if max_new_tokens is None:
        raise PreflineError("dr_grpo normalisation needs max_new_tokens", field="max_new_tokens")
    return masked.sum() / max_new_tokens, b


# ----- PPO -------------------------------------------------------------------------------------

def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over each completion's tokens: ``(advantages,
    returns)``, both ``(B, T)``, zero on padding.

    ``δ_t = r_t + γ V_{t+1} - V_t`` (``V`` after the last token is 0),
    ``A_t = δ_t + γλ A_{t+1}``, returns ``A_t + V_t``. ``mask`` must be a prefix of ones."""
    values = values * mask
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        nxt = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * nxt - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    return adv, (adv + values) * mask


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor,
               clip: float | None = 0.2) -> Tensor:
    """Clipped value loss per token: ``½ max((V - R)², (clip(V, V_old ± clip) - R)²)``."""
    plain = (values - returns) ** 2
    if clip is None:
        return 0.5 * plain
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * torch.max(plain, (clipped - returns) ** 2)


def whiten(x: Tensor, mask: Tensor, mean: float, var: float, shift_mean: bool = True) -> Tensor:
    """``(x - mean) / sqrt(var + 1e-8)`` on the mask (statistics given, so a caller can take
    them over every process); ``shift_mean=False`` adds the mean back (rewards keep their
    sign, as in Ziegler et al.'s reward normalisation)."""
    out = (x - mean) / (var + 1e-8) ** 0.5
    if not shift_mean:
        out = out + mean
    return out * mask


def masked_stats(x: Tensor, mask: Tensor, reduce: Callable[[list[float]], list[float]] | None
                 = None) -> tuple[float, float]:
    """Mean and (biased) variance of ``x`` on ``mask``; ``reduce`` sums ``[Σx, Σx², n]`` over
    processes, so every process whitens with the same global statistics."""
    sums = [float((x * mask).sum()), float((x * x * mask).sum()), float(mask.sum())]
    if reduce is not None:
        sums = reduce(sums)
    n = max(sums[2], 1.0)
    mean = sums[0] / n
    return mean, max(sums[1] / n - mean * mean, 0.0)


@dataclass
class AdaptiveKL:
    """Ziegler et al. (2019)'s KL controller: ``β ← β·(1 + clip(KL/target - 1, ±0.2)·n/horizon)``
    after each batch of ``n`` completions, so the measured KL tracks ``target`` (nats per
    completion)."""

    value: float
    target: float
    horizon: float = 10_000.0

    def update(self, kl: float, n: float) -> float:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n / self.horizon
        return self.value
