"""Run under torchrun (any number of processes, nodes): FSDP on a tiny Llama, resumed ==
uninterrupted, and LoRA adapters on top. Writes rank 0's losses and final weights to
argv[1]."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prefline.base.distributed import rank
from prefline.models.tiny import tiny_causal_lm
from prefline.train.engine import TrainConfig, Trainer


class NextToken:
    """Summed next-token loss over fixed-length rows (enough to train every layer)."""

    def collate(self, rows: Sequence[Tensor]) -> dict[str, Any]:
        return {"ids": torch.stack(list(rows)), "n": len(rows)}

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, float, dict[str, float]]:
        logits = model(input_ids=batch["ids"]).logits[:, :-1]
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                           batch["ids"][:, 1:].reshape(-1), reduction="sum")
        return loss / batch["ids"].size(1), batch["n"], {}


def train(out: Path, cfg: TrainConfig, lora: bool = False) -> tuple[list[float], dict[str, Tensor]]:
    model, _tok = tiny_causal_lm(seed=0, hidden=32, layers=2, heads=2)
    if lora:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(0)
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                 target_modules="all-linear"))
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(0, 256, (12,), generator=g) for _ in range(16)]
    trainer = Trainer(model, NextToken(), rows, cfg, run_dir=out)
    result = trainer.fit()
    plain = trainer.plain_model()
    return [r["loss"] for r in result.history], {k: v.detach().clone()
                                                 for k, v in plain.named_parameters()
                                                 if v.requires_grad or not lora}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    cfg = TrainConfig(lr=1e-2, batch_size=2, grad_accum=2, max_steps=4, precision="fp32",
                      warmup_ratio=0.0, schedule="constant", strategy="fsdp",
                      activation_checkpointing=True, save_every_minutes=None)
    whole, weights = train(out / "whole", cfg)
    train(out / "cut", replace(cfg, max_steps=2))
    resumed, resumed_weights = train(out / "cut", replace(cfg, resume=True))
    lora, lora_weights = train(out / "lora", replace(cfg, max_steps=2), lora=True)
    if rank() == 0:
        (out / "losses.json").write_text(json.dumps({"whole": whole, "resumed": resumed,
                                                     "lora": lora}))
        torch.save({"whole": weights, "resumed": resumed_weights, "lora": lora_weights},
                   out / "weights.pt")
