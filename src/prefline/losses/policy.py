"""The DPO family and KTO as pure tensor functions, registered by name in :data:`LOSSES`.

Every loss has the torchtune signature::

    loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
         beta, **options) -> (losses, chosen_rewards, rejected_rewards)

The four log-prob tensors have shape ``(B,)`` and hold *summed* log-probs of each response
(nats). ``losses`` has shape ``(B,)`` (KTO: ``(B_desirable + B_undesirable,)``) and is not
reduced, so the training engine can sum it and divide by the global example count. Rewards
are the implicit rewards used for logging and accuracy, detached.

Options a loss does not use are rejected by :func:`compute`, so a misspelt option fails
loudly instead of being ignored. ``chosen_lengths`` / ``rejected_lengths`` (response token
counts, shape ``(B,)``) are passed to every loss that normalises by length.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from prefline.base.errors import PreflineError

LossOutput = tuple[Tensor, Tensor, Tensor]


def _logratios(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor) -> tuple[Tensor, Tensor]:
    """Per-response log(pi/pi_ref) for chosen and rejected."""
    return pc - rc, pr - rr


def _rewards(beta: float, chosen: Tensor, rejected: Tensor) -> tuple[Tensor, Tensor]:
    return beta * chosen.detach(), beta * rejected.detach()


def sigmoid(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float = 0.1) -> LossOutput:
    """DPO (Rafailov et al. 2023): ``-log sigma(beta * (Δ_chosen - Δ_rejected))``."""
    lc, lr = _logratios(pc, pr, rc, rr)
    return (-F.logsigmoid(beta * (lc - lr)), *_rewards(beta, lc, lr))


def cdpo(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float = 0.1,
         label_smoothing: float = 0.1) -> LossOutput:
    """Conservative DPO: the labels are flipped with probability ``label_smoothing`` (ε).

    ``-(1-ε) log σ(βh) - ε log σ(-βh)`` with ``h = Δ_chosen - Δ_rejected``; ε=0 is DPO.
    """
    lc, lr = _logratios(pc, pr, rc, rr)
    h = beta * (lc - lr)
    losses = -(1 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h)
    return (losses, *_rewards(beta, lc, lr))


def robust(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float = 0.1,
           label_smoothing: float = 0.1) -> LossOutput:
    """rDPO (Chowdhury et al. 2024): an unbiased loss under label-flip rate ε < 0.5.

    ``(-(1-ε) log σ(βh) + ε log σ(-βh)) / (1 - 2ε)``.
    """
    if not 0 <= label_smoothing < 0.5:
        raise PreflineError("robust DPO needs 0 <= label_smoothing < 0.5", field="label_smoothing")
    lc, lr = _logratios(pc, pr, rc, rr)
    h = beta * (lc - lr)
    losses = (-(1 - label_smoothing) * F.logsigmoid(h) + label_smoothing * F.logsigmoid(-h))
    return (losses / (1 - 2 * label_smoothing), *_rewards(beta, lc, lr))


def hinge(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float = 0.1) -> LossOutput:
    """SLiC-style hinge: ``max(0, 1 - β h)``."""
    lc, lr = _logratios(pc, pr, rc, rr)
    return (torch.relu(1 - beta * (lc - lr)), *_rewards(beta, lc, lr))


def ipo(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float = 0.1,
        chosen_lengths: Tensor | None = None, rejected_lengths: Tensor | None = None) -> LossOutput:
    """IPO (Azar et al. 2023, eq. 17): ``(h - 1/(2β))²``.

    With lengths given, ``h`` uses per-token log-ratios (as the IPO authors' experiments do,
    so β does not depend on response length); without, summed ones.
    """
    lc, lr = _logratios(pc, pr, rc, rr)
    if chosen_lengths is not None and rejected_lengths is not None:
        h = lc / chosen_lengths.clamp(min=1) - lr / rejected_lengths.clamp(min=1)
    else:
        h = lc - lr
    return ((h - 1 / (2 * beta)) ** 2, *_rewards(beta, lc, lr))


def _require_lengths(name: str, *lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    a, b = lengths
    if a is None or b is None:
        raise PreflineError(f"the {name} loss needs chosen_lengths and rejected_lengths")
    return a.clamp(min=1), b.clamp(min=1)


def simpo(pc: Tensor, pr: Tensor, rc: Tensor | None = None, rr: Tensor | None = None,
          beta: float = 2.0, gamma: float = 0.5, chosen_lengths: Tensor | None = None,
          rejected_lengths: Tensor | None = None) -> LossOutput:
    """SimPO (Meng et al. 2024), reference-free: ``-log σ(β(avg_c - avg_r) - γ)``.

    ``avg`` is the mean per-token log-prob; the reference arguments are ignored.
    Rewards are ``β * avg``.
    """
    nc, nr = _require_lengths("simpo", chosen_lengths, rejected_lengths)
    ac, ar = pc / nc, pr / nr
    return (-F.logsigmoid(beta * (ac - ar) - gamma), *_rewards(beta, ac, ar))


def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for x < 0, accurate at both ends (Mächler 2012)."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)),
                       torch.log1p(-torch.exp(x)))


def orpo(pc: Tensor, pr: Tensor, rc: Tensor | None = None, rr: Tensor | None = None,
         beta: float = 0.1, chosen_lengths: Tensor | None = None,
         rejected_lengths: Tensor | None = None) -> LossOutput:
    """ORPO (Hong et al. 2024), reference-free: NLL on chosen + β × odds-ratio loss.

    With per-token average log-probs ``a``: ``log odds(y) = a - log(1 - e^a)``;
    loss = ``-a_chosen - β log σ(log odds_c - log odds_r)``. Rewards are ``β * a``.
    """
    nc, nr = _require_lengths("orpo", chosen_lengths, rejected_lengths)
    ac, ar = pc.float() / nc, pr.float() / nr
    log_odds = (ac - ar) - (_log1mexp(ac) - _log1mexp(ar))
    return (-ac - beta * F.logsigmoid(log_odds), *_rewards(beta, ac, ar))


def kto(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float = 0.1,
        kl: Tensor | float = 0.0, desirable_weight: float = 1.0,
        undesirable_weight: float = 1.0) -> LossOutput:
    """KTO (Ethayarajh et al. 2024, eq. 7) on *unpaired* data.

    ``pc``/``rc`` are the desirable examples (shape ``(D,)``), ``pr``/``rr`` the undesirable
    ones (shape ``(U,)``; D and U may differ or be 0). ``kl`` is the detached reference point
    z0 (an estimate of KL(π‖π_ref), clamped at 0; :mod:`prefline.train.policy_tasks` says how
    prefline estimates it). Losses, shape ``(D+U,)``:
    desirable ``w_d (1 - σ(β(Δ - z0)))``, undesirable ``w_u (1 - σ(β(z0 - Δ)))``.
    """
    lc, lr = _logratios(pc, pr, rc, rr)
    z0 = torch.as_tensor(kl, dtype=lc.dtype).detach().clamp(min=0)
    losses = torch.cat([desirable_weight * (1 - torch.sigmoid(beta * (lc - z0))),
                        undesirable_weight * (1 - torch.sigmoid(beta * (z0 - lr)))])
    return (losses, *_rewards(beta, lc, lr))


def nll_term(pc: Tensor, chosen_lengths: Tensor) -> Tensor:
    """RPO's extra term: per-example length-normalised NLL of the chosen response, ``(B,)``.

    Add ``alpha * nll_term(...)`` to any paired loss (Pang et al. 2024).
    """
    return -pc / chosen_lengths.clamp(min=1)


LOSSES: dict[str, Callable[..., LossOutput]] = {
    "sigmoid": sigmoid, "ipo": ipo, "cdpo": cdpo, "robust": robust, "hinge": hinge,
    "simpo": simpo, "orpo": orpo, "kto": kto,
}
_CONTEXT = ("chosen_lengths", "rejected_lengths", "kl")


def compute(name: str, pc: Tensor, pr: Tensor, rc: Tensor | None, rr: Tensor | None,
            beta: float, **options: Any) -> LossOutput:
    """Call ``LOSSES[name]``; context options it does not take are dropped, others rejected."""
    if name not in LOSSES:
        raise PreflineError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}",
                            field="loss")
    fn = LOSSES[name]
    accepted = inspect.signature(fn).parameters
    unknown = [k for k in options if k not in accepted and k not in _CONTEXT]
    if unknown:
        raise PreflineError(f"the {name} loss takes no option {unknown[0]!r}", field=unknown[0])
    return fn(pc, pr, rc, rr, beta, **{k: v for k, v in options.items() if k in accepted})
