"""Reward-model losses: pure tensor functions, registered by name in :data:`LOSSES`.

Every function returns a PER-EXAMPLE loss tensor (shape ``[B]``) so the caller decides how to
reduce (the training engine wants sums so that gradient accumulation equals a large batch).
Scores are raw rewards ``r`` (any real number); ``Δ = r_chosen - r_rejected``.

Worked numbers used by the tests (``ln 2 = 0.693147``, ``σ(1) = 0.731059``):

- Bradley-Terry, Δ = 0: ``-log σ(0) = ln 2 = 0.693147``.
- Bradley-Terry, Δ = 1, margin 1: ``-log σ(1 - 1) = ln 2``.
- Bradley-Terry, Δ = 1, label smoothing 0.1:
  ``0.9·(-log σ(1)) + 0.1·(-log σ(-1)) = 0.9·0.313262 + 0.1·1.313262 = 0.413262``.
- Davidson, Δ = 0, ν = 1: P(win) = P(loss) = P(tie) = 1/3, so both losses are ``ln 3``.
- Plackett-Luce over three equal scores: ``ln 3 + ln 2 = ln 6 = 1.791759``; with K = 2 it
  is exactly Bradley-Terry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def bradley_terry(chosen: Tensor, rejected: Tensor, margin: Tensor | float | None = None,
                  label_smoothing: float = 0.0) -> Tensor:
    """``-[(1-ε)·log σ(Δ - m) + ε·log σ(-(Δ - m))]`` per pair; shapes ``[B]`` → ``[B]``.

    ``margin`` m (per pair or scalar) asks the chosen score to win by at least m, as TRL's
    ``margin`` column does. ``label_smoothing`` ε treats each label as wrong with
    probability ε (conservative BT, robust to label noise); ε = 0 is plain BT.
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError("label_smoothing must be in [0, 0.5)")
    delta = chosen - rejected
    if margin is not None:
        delta = delta - margin
    loss = -F.logsigmoid(delta)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-delta)
    return loss


def reward_centering(chosen: Tensor, rejected: Tensor, coef: float = 0.01) -> Tensor:
    """``coef · (r_c + r_r)²`` per pair: pulls the pair's mean reward towards zero.

    BT only sees differences, so the absolute level drifts; this auxiliary term (Eisenstein et
    al. 2023, TRL's ``center_rewards_coefficient``) pins it. Its mean over pairs equals TRL's
    ``coef * torch.mean((rewards_chosen + rewards_rejected) ** 2)``.
    """
    return coef * (chosen + rejected) ** 2


def davidson(chosen: Tensor, rejected: Tensor, tie: Tensor,
             log_nu: Tensor | float = 0.0) -> Tensor:
    """Davidson (1970) ties model; ``tie`` is a bool ``[B]`` (True: judged equal).

    With π = e^r and ν = e^{log_nu} ≥ 0: P(c ≻ r) = π_c / (π_c + π_r + ν√(π_c π_r)) and
    P(tie) = ν√(π_c π_r) / (same). Dividing through by √(π_c π_r) gives the stable log form
    ``log P(win) = Δ/2 - LSE(Δ/2, -Δ/2, log ν)`` and ``log P(tie) = log ν - LSE(...)``.
    A tie pulls the two scores together instead of being dropped.
    """
    half = (chosen - rejected) / 2
    log_nu_t = torch.as_tensor(log_nu, dtype=half.dtype, device=half.device).expand_as(half)
    log_z = torch.logsumexp(torch.stack([half, -half, log_nu_t]), dim=0)
    return log_z - torch.where(tie.bool(), log_nu_t, half)


def rao_kupper(chosen: Tensor, rejected: Tensor, tie: Tensor,
               log_theta: Tensor | float = 0.5) -> Tensor:
    """Rao-Kupper (1967) ties model with threshold θ = e^{log_theta} > 1 (log_theta > 0).

    P(c ≻ r) = σ(Δ - log θ), P(r ≻ c) = σ(-Δ - log θ), P(tie) = 1 - both. A difference
    smaller than log θ is "too close to call". E.g. Δ = 0, log θ = ln 3: P(win) = σ(-ln 3) =
    1/4, P(tie) = 1/2, so the tie loss is ln 2 and the win loss is ln 4.
    """
    delta = chosen - rejected
    a = torch.as_tensor(log_theta, dtype=delta.dtype, device=delta.device)
    win = F.logsigmoid(delta - a)
    p_tie = 1 - torch.sigmoid(delta - a) - torch.sigmoid(-delta - a)
    tie_ll = torch.log(p_tie.clamp_min(1e-12))
    return -torch.where(tie.bool(), tie_ll, win)


def plackett_luce(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Plackett-Luce NLL of a ranking; ``scores[b, k]`` is the k-th BEST response's score.

    ``-log P(order) = Σ_k [log Σ_{j≥k} e^{s_j} - s_k]``, shape ``[B, K]`` → ``[B]``.
    ``mask[b, k] = False`` marks padding for rankings shorter than K (padding goes last).
    K = 2 reduces to Bradley-Terry: ``log(e^{s1}+e^{s2}) - s1 = -log σ(s1 - s2)``.
    """
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    neg_inf = torch.finfo(scores.dtype).min
    s = scores.masked_fill(~mask, neg_inf)
    # Suffix log-sum-exp: flip, cumulative LSE, flip back.
    suffix = torch.logcumsumexp(s.flip(-1), dim=-1).flip(-1)
    terms = (suffix - s).masked_fill(~mask, 0.0)
    return terms.sum(-1)


def rating_mse(scores: Tensor, targets: Tensor) -> Tensor:
    """Squared error ``(r - y)²`` per example; ``targets`` should be standardised ratings."""
    return (scores - targets) ** 2


def ordinal_logistic(scores: Tensor, labels: Tensor, thresholds: Tensor) -> Tensor:
    """Cumulative-link (ordered logit) NLL for ratings on an ordinal scale 0..K-1.

    ``P(y ≤ k) = σ(θ_k - r)`` with increasing thresholds θ (shape ``[K-1]``), θ_{-1} = -∞ and
    θ_{K-1} = +∞, so ``P(y = k) = σ(θ_k - r) - σ(θ_{k-1} - r)``. E.g. K = 2, θ = [0], r = 0:
    P(y=0) = P(y=1) = 1/2 and the loss is ln 2. ``labels`` are int64 ``[B]``.
    """
    inf = torch.tensor([torch.inf], dtype=scores.dtype, device=scores.device)
    theta = torch.cat([-inf, thresholds.to(scores.dtype), inf])
    upper = torch.sigmoid(theta[labels + 1] - scores)
    lower = torch.sigmoid(theta[labels] - scores)
    return -torch.log((upper - lower).clamp_min(1e-12))


LOSSES: dict[str, Callable[..., Any]] = {
    "bradley_terry": bradley_terry,
    "davidson": davidson,
    "rao_kupper": rao_kupper,
    "plackett_luce": plackett_luce,
    "rating_mse": rating_mse,
    "ordinal_logistic": ordinal_logistic,
    "reward_centering": reward_centering,
}
"""Name → loss function; configs pick pairwise/tie losses by these names."""
