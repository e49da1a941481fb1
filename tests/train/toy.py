"""A toy regression Task for engine tests (kept importable for the DDP worker)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn


def toy_data(n: int = 32, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, 4, generator=g)
    ys = xs @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)
    return [(xs[i], ys[i]) for i in range(n)]


def toy_model(dropout: float = 0.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


class ToyTask:
    def collate(self, examples: Sequence[tuple[Tensor, Tensor]]) -> dict[str, Any]:
        return {"x": torch.stack([e[0] for e in examples]),
                "y": torch.stack([e[1] for e in examples]), "n": len(examples)}

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, float, dict[str, float]]:
        pred = model(batch["x"]).squeeze(-1)
        err = (pred - batch["y"]) ** 2
        return err.sum(), batch["n"], {"abs_err": float((pred - batch["y"]).detach().abs().sum())}
