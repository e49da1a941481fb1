"""Engine Tasks for policy training, and their held-out metrics.

:class:`DPOTask` trains any paired loss of :mod:`prefline.losses.policy` on packed
prefix-shared pairs. :class:`KTOTask` trains KTO on single labelled responses.

KTO's reference point z0 (Ethayarajh et al. 2024, §4.1) estimates KL(π‖π_ref) so that an
example only counts as "better than the reference" relative to how far the policy has moved
overall. We estimate it as the paper and TRL's KTOTrainer do, from *mismatched* pairs: each
example carries a fixed partner completion from another prompt (see
:func:`prefline.train.policy_batch.encode_unpaired`), and

    z0 = max(0, mean over the optimizer step of [log π(partner | x) - log π_ref(partner | x)])

detached. Two choices differ from TRL, both for exactness: the mean is over every example
of the optimizer step on every process (TRL: per micro-batch, then gathered), computed once
per step in :meth:`KTOTask.prepare_step`, so gradient accumulation and 2 processes equal one
large batch; and partners are fixed at encoding, so their reference log-probs are computed
once and cached with the rest. The simpler alternative, the batch's own detached mean
log-ratio, was rejected: it moves with the very examples being pushed up and down.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prefline.losses.policy import LOSSES, compute, nll_term
from prefline.train.policy_batch import EncodedPair, EncodedSingle, PackedBatch, pack
from prefline.train.policy_config import DPOConfig

_LOSS_OPTIONS = ("label_smoothing", "gamma", "desirable_weight", "undesirable_weight")


def loss_options(cfg: DPOConfig) -> dict[str, Any]:
    """The settings the chosen loss takes (e.g. gamma for simpo)."""
    accepted = inspect.signature(LOSSES[cfg.loss]).parameters
    return {k: getattr(cfg, k) for k in _LOSS_OPTIONS if k in accepted}


class DPOTask:
    """Engine Task: packs EncodedPairs (with cached reference log-probs) and sums the loss."""

    def __init__(self, cfg: DPOConfig, pad_id: int = 0) -> None:
        self.cfg, self.pad_id = cfg, pad_id

    def collate(self, examples: Sequence[EncodedPair]) -> PackedBatch:
        return pack(examples, self.cfg.row_tokens, self.pad_id)

    def count(self, batch: PackedBatch) -> int:
        return batch.n

    def loss(self, model: nn.Module, batch: PackedBatch) -> tuple[Tensor, float, dict[str, float]]:
        logps = model(batch)
        pc, pr = logps[0::2], logps[1::2]
        rc, rr = batch.ref[:, 0], batch.ref[:, 1]
        lc, lr = batch.lengths[0::2], batch.lengths[1::2]
        # Sequence-level log-ratio on the data: a cheap estimate of how far the policy moved.
        drift = ((pc - rc) + (pr - rr)).detach() / 2
        losses, rew_c, rew_r = compute(self.cfg.loss, pc, pr, rc, rr, self.cfg.beta,
                                       chosen_lengths=lc, rejected_lengths=lr,
                                       **loss_options(self.cfg))
        if self.cfg.rpo_alpha:
            losses = losses + self.cfg.rpo_alpha * nll_term(pc, lc)
        metrics = {
            "accuracy": float((rew_c > rew_r).sum()), "margin": float((rew_c - rew_r).sum()),
            "reward_chosen": float(rew_c.sum()), "reward_rejected": float(rew_r.sum()),
            "logps_chosen": float(pc.detach().sum()), "logps_rejected": float(pr.detach().sum()),
            "kl": float(drift.sum()), "tokens": float(batch.tokens),
            "response_tokens": float(batch.lengths.sum()),
        }
        return losses.sum(), float(batch.n), metrics


@dataclass
class KTOBatch:
    """``n`` KTO examples: their completions (trained) and partners (z0, no grad)."""

    completions: PackedBatch
    partners: PackedBatch
    desirable: Tensor  # (n,) bool
    weight: Tensor     # (n,) float32, the example's label weight
    n: int


def partner_log_ratio_sum(model: nn.Module, batch: KTOBatch) -> float:
    """Σ over the batch of log π(partner|x) - log π_ref(partner|x) (no grad)."""
    with torch.no_grad():
        logps = model(batch.partners).double()
    return float((logps - batch.partners.ref[:, 1].double()).sum())


class KTOTask:
    """Engine Task for KTO on single labelled responses; z0 as in the module docstring."""

    def __init__(self, cfg: DPOConfig, pad_id: int = 0) -> None:
        self.cfg, self.pad_id = cfg, pad_id
        self.z0 = 0.0

    def collate(self, examples: Sequence[EncodedSingle]) -> KTOBatch:
        return KTOBatch(
            completions=pack(examples, self.cfg.row_tokens, self.pad_id, which=(0,)),
            partners=pack(examples, self.cfg.row_tokens, self.pad_id, which=(1,)),
            desirable=torch.tensor([e.desirable for e in examples], dtype=torch.bool),
            weight=torch.tensor([e.weight for e in examples], dtype=torch.float32),
            n=len(examples))

    def count(self, batch: KTOBatch) -> int:
        return batch.n

    def prepare_step(self, model: nn.Module, batches: Sequence[KTOBatch],
                     all_reduce: Callable[[list[float]], list[float]]) -> None:
        """z0 for this optimizer step, over every micro-batch on every process."""
        local = [sum(partner_log_ratio_sum(model, b) for b in batches),
                 float(sum(b.n for b in batches))]
        total, count = all_reduce(local)
        self.z0 = max(0.0, total / count)

    def loss(self, model: nn.Module, batch: KTOBatch) -> tuple[Tensor, float, dict[str, float]]:
        logps = model(batch.completions)
        ref = batch.completions.ref[:, 0]
        d = batch.desirable
        losses, _, _ = compute("kto", logps[d], logps[~d], ref[d], ref[~d], self.cfg.beta,
                               kl=torch.tensor(self.z0, device=logps.device), **loss_options(self.cfg))
        # kto returns the desirable examples' losses first, then the undesirable ones'.
        weights = torch.cat([batch.weight[d], batch.weight[~d]])
        ratio = (logps - ref).detach()
        side = torch.where(d, 1.0, -1.0)
        metrics = {
            "accuracy": float((side * (ratio - self.z0) > 0).sum()),
            "margin": float((self.cfg.beta * side * (ratio - self.z0)).sum()),
            "kl": self.z0 * batch.n, "desirable": float(d.sum()),
            "logps": float(logps.detach().sum()), "tokens": float(batch.completions.tokens),
            "response_tokens": float(batch.completions.lengths.sum()),
        }
        return (losses * weights).sum(), float(batch.n), metrics


def response_logps(logps_fn: nn.Module, items: Sequence[EncodedPair | EncodedSingle],
                   batch_items: int = 16, pad_id: int = 0) -> Tensor:
    """``(n, 2)`` summed log-probs of both responses of each item, no grad, in order."""
    out = []
    with torch.no_grad():
        for s in range(0, len(items), batch_items):
            out.append(logps_fn(pack(items[s:s + batch_items], pad_id=pad_id)).view(-1, 2))
    return torch.cat(out).double().cpu()  # metrics combine them with CPU reference values


def pair_metrics(logps: Tensor, pairs: Sequence[EncodedPair], beta: float) -> dict[str, float]:
    """Held-out DPO metrics: accuracy of β·(Δ_chosen − Δ_rejected) > 0, mean margin."""
    ref = torch.tensor([p.ref for p in pairs], dtype=torch.float64)
    margin = beta * ((logps[:, 0] - ref[:, 0]) - (logps[:, 1] - ref[:, 1]))
    return {"accuracy": float((margin > 0).double().mean()), "margin": float(margin.mean()),
            "pairs": float(len(pairs))}


def kto_metrics(logps: Tensor, items: Sequence[EncodedSingle], beta: float) -> dict[str, float]:
    """Held-out KTO metrics: z0 from the items' partners; accuracy = share of desirable
    examples whose log-ratio is above z0 and undesirable ones below it; mean signed margin
    β·(Δ − z0)."""
    ref = torch.tensor([e.ref for e in items], dtype=torch.float64)
    ratio = logps - ref
    z0 = max(0.0, float(ratio[:, 1].mean()))
    side = torch.tensor([1.0 if e.desirable else -1.0 for e in items], dtype=torch.float64)
    signed = side * (ratio[:, 0] - z0)
    return {"accuracy": float((signed > 0).double().mean()),
            "margin": float(beta * signed.mean()), "kl": z0, "examples": float(len(items))}
