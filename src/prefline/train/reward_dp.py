"""Differentially private reward training: DP-SGD through Opacus (issue 14, item 9).

Scope, and why: the reward heads (and a personalised model's heads or embeddings) train with
DP-SGD on the features of a **frozen** pretrained backbone. Per-example gradients of a
transformer trained on packed rows are not per-example (a packed row mixes sequences of
different pairs), and the backbone's weights are public, so freezing it keeps the
guarantee exact: the released model is a public backbone plus heads trained with per-pair
clipping and Gaussian noise. One DP example is one preference pair (a user who gave several
pairs is protected per pair, not per user).

Batches are Poisson-sampled (each pair joins a step with probability batch/N), as the
accountant (RDP) assumes. Nothing else is fitted on the private data: the reward keeps mean
0 / std 1 normalisation and temperature 1, and there is no early stopping on val. Only
strict pairs train; ties, rankings and ratings are counted and left out.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from prefline.base.errors import PreflineError
from prefline.models.reward import RewardModel
from prefline.store.context import Context
from prefline.train.engine import TrainResult
from prefline.train.reward_config import RewardConfig
from prefline.train.reward_task import Item

SCOPE = ("heads only: the pretrained backbone is frozen; normalisation and temperature are "
         "not fitted on the private data; one example = one preference pair")


class _PairHeads(nn.Module):
    """``(features [B, 2, D], groups [B, 2]) -> r_chosen - r_rejected [B]`` through the
    model's own head modules (shared, so training updates the model)."""

    def __init__(self, model: RewardModel) -> None:
        super().__init__()
        self.dropout, self.head, self.personal = model.dropout, model.head, model.personal
        self.register_buffer("weights", model.weights.clone(), persistent=False)

    def forward(self, feats: Tensor, groups: Tensor) -> Tensor:
        h = self.dropout(feats)
        scores = self.head(h)
        if self.personal is not None:
            scores = self.personal(h, scores, groups)
        combined = (scores * self.weights).sum(-1)
        return combined[:, 0] - combined[:, 1]


@torch.no_grad()
def pair_features(model: RewardModel, items: list[Item], chunk: int = 64) -> Tensor:
    """Pooled backbone vectors of each pair's (chosen, rejected), ``[P, 2, D]`` fp32."""
    model.eval()
    out = []
    for i in range(0, len(items), chunk):
        seqs = [s for it in items[i:i + chunk] for s in it.seqs[:2]]
        out.append(model.features(model.make_batch(seqs)).float())  # on the model's device
    feats = torch.cat(out)
    return feats.view(-1, 2, feats.size(-1))


def fit_dp(model: RewardModel, items: list[Item], cfg: RewardConfig,
           ctx: Context) -> tuple[TrainResult, dict[str, Any]]:
    """Train ``model``'s heads with DP-SGD to ``cfg.dp_epsilon``; (the run's steps and
    history, the privacy record for the model card)."""
    from opacus import PrivacyEngine

    pairs = [it for it in items if it.kind == "pair"]
    if len(pairs) < 2:
        raise PreflineError("DP-SGD needs at least 2 strict preference pairs in train",
                            field="dp_epsilon")
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    feats = pair_features(model, pairs)
    groups = torch.tensor([[it.group, it.group] for it in pairs], dtype=torch.long,
                          device=feats.device)
    t = cfg.train
    batch = min(len(pairs), t.batch_size * t.grad_accum)
    torch.manual_seed(t.seed)
    loader = DataLoader(TensorDataset(feats, groups), batch_size=batch, shuffle=True)
    heads = _PairHeads(model).train()
    optimizer = torch.optim.Adam([p for p in heads.parameters() if p.requires_grad], lr=t.lr,
                                 weight_decay=t.weight_decay)
    with warnings.catch_warnings():  # the secure-RNG notice: secure_mode is off (docs)
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp")
        dp_heads, optimizer, loader = engine.make_private_with_epsilon(
            module=heads, optimizer=optimizer, data_loader=loader, epochs=t.epochs,
            target_epsilon=float(cfg.dp_epsilon or 0), target_delta=cfg.dp_delta,
            max_grad_norm=cfg.dp_max_grad_norm, poisson_sampling=True)
    history = _train(dp_heads, optimizer, loader, t.epochs, ctx)
    dp_heads.remove_hooks()
    for p in heads.parameters():
        p.grad_sample = None  # type: ignore[attr-defined]
    model.eval()
    epsilon = float(engine.get_epsilon(cfg.dp_delta))
    record = {"epsilon": epsilon, "delta": cfg.dp_delta, "target_epsilon": cfg.dp_epsilon,
              "max_grad_norm": cfg.dp_max_grad_norm,
              "noise_multiplier": float(optimizer.noise_multiplier),
              "sample_rate": batch / len(pairs), "poisson_sampling": True, "accountant": "rdp",
              "epochs": t.epochs, "steps": len(history), "examples": len(pairs),
              "left_out": len(items) - len(pairs), "scope": SCOPE}
    return TrainResult(len(history), history), record


def _train(module: nn.Module, optimizer: Any, loader: DataLoader[Any], epochs: int,
           ctx: Context) -> list[dict[str, Any]]:
    """Plain DP-SGD steps; a Poisson batch may be empty, then the step adds noise only."""
    history: list[dict[str, Any]] = []
    steps = epochs * len(loader)
    with ctx.progress.bar(steps, "dp-sgd") as bar:
        for _ in range(epochs):
            for feats, groups in loader:
                optimizer.zero_grad()
                if len(feats):
                    delta = module(feats, groups)
                    loss = -torch.nn.functional.logsigmoid(delta).mean()
                    with warnings.catch_warnings():  # the inputs are features: no grad
                        warnings.simplefilter("ignore")
                        loss.backward()
                    stats = {"loss": loss.item(), "accuracy": float((delta > 0).float().mean())}
                else:
                    stats = {"loss": float("nan"), "accuracy": float("nan")}
                optimizer.step()
                history.append({"step": len(history) + 1, **stats})
                bar.update(stats)
    return history
