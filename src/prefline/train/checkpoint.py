"""Checkpoints hold only trainable weights (small for LoRA), optimizer, scheduler and RNG."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().clone() for n, p in model.named_parameters()
            if p.requires_grad}


def save_weights(model: nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "trainable.safetensors.tmp"
    save_file(trainable_state(model), str(tmp))
    tmp.replace(folder / "trainable.safetensors")


def load_weights(model: nn.Module, folder: Path) -> None:
    state = load_file(str(folder / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [k for k in state if k not in params]
    if missing:
        raise RuntimeError(f"checkpoint {folder} has unknown parameters: {missing[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def save_checkpoint(out: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    sched: Any, state: dict[str, Any]) -> Path:
    """Write ``out/checkpoints/step-N`` atomically, then point ``latest`` at it."""
    root = out / "checkpoints"
    final = root / f"step-{state['step']}"
    tmp = root / f".tmp-step-{state['step']}"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_weights(model, tmp)
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                        "numpy": np.random.get_state()}}, tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps(state, default=str, indent=1))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    (root / "latest.tmp").write_text(final.name)
    (root / "latest.tmp").replace(root / "latest")
    return final


def load_latest(out: Path, model: nn.Module, opt: torch.optim.Optimizer,
                sched: Any) -> dict[str, Any] | None:
    """Restore the latest checkpoint under ``out``; None when there is none."""
    pointer = out / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    folder = out / "checkpoints" / pointer.read_text().strip()
    load_weights(model, folder)
    blob = torch.load(folder / "trainer.pt", weights_only=False)
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng"]["torch"])
    random.setstate(blob["rng"]["python"])
    np.random.set_state(blob["rng"]["numpy"])
    return json.loads((folder / "state.json").read_text())
