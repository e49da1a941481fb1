"""Checkpoints: what a run needs to continue exactly, and what it must match to continue.

``<run>/checkpoints/step-N/`` holds the trainable weights (small under LoRA), the optimizer,
the scheduler and the random state of step N's boundary (``trainer.pt``), and ``state.json``:
the step, the early-stopping state and the run's *fingerprint* (the stage's settings, the
data hash, the base model; see :func:`differences`). ``latest`` names the newest one;
``best/`` holds the best weights for early stopping and is never pruned. Under FSDP the
weights and optimizer are a ``sharded/`` folder of ``torch.distributed.checkpoint`` instead
(every rank writes its shard; rank 0 writes the rest and names the folder).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prefline.base.distributed import barrier
from prefline.base.errors import PreflineError
from prefline.train import fsdp
from prefline.train.train_config import TrainConfig

RESUME_FREE = frozenset({"resume", "save_every", "save_every_minutes", "keep_last",
                         "max_steps", "epochs", "report_to"})
"""Settings (by leaf name) that may differ on resume: they say where to stop and how often
to save, not what a step computes. The run's length is checked separately, through the
learning rate of the steps already taken (:func:`check_length`)."""


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


def rng_state() -> dict[str, Any]:
    """Every random generator a step may draw from (torch CPU and CUDA, python, numpy)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                    state: dict[str, Any], *, rng: dict[str, Any] | None = None,
                    keep_last: int | None = None, sharded: bool = False,
                    rank: int = 0, scaler: Any = None) -> Path:
    """Write ``out/checkpoints/step-N`` atomically, point ``latest`` at it, then delete all
    but the newest ``keep_last`` step checkpoints. ``rng`` is the random state of the step
    boundary (default: now). ``sharded``: an FSDP model; every rank calls this."""
    root = out / "checkpoints"
    final = root / f"step-{state['step']}"
    tmp = root / f".tmp-step-{state['step']}"
    if rank == 0 and tmp.exists():
        shutil.rmtree(tmp)
    if sharded:
        barrier()  # rank 0 has cleared the folder every rank writes into
        fsdp.save_sharded(tmp / "sharded", model, opt)  # returns once every shard is written
        if rank != 0:
            return final
    else:
        save_weights(model, tmp)
    torch.save({"optimizer": None if sharded else opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": rng if rng is not None else rng_state(),
                # fp16 on a GPU: the loss scale and its growth tracker continue exactly.
                "scaler": scaler.state_dict() if scaler is not None else None},
               tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps(state, default=str, indent=1))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    (root / "latest.tmp").write_text(final.name)
    (root / "latest.tmp").replace(root / "latest")
    if keep_last is not None:
        prune(root, keep_last)
    return final


def _step_folders(root: Path) -> list[tuple[int, Path]]:
    found = []
    for p in root.glob("step-*"):
        suffix = p.name.removeprefix("step-")
        if p.is_dir() and suffix.isdigit():
            found.append((int(suffix), p))
    return sorted(found)


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` ``step-N`` folders (never ``latest``'s, never
    ``best``) and any half-written ``.tmp-step-N`` left by a killed process."""
    pointer = root / "latest"
    latest = pointer.read_text().strip() if pointer.exists() else None
    folders = _step_folders(root)
    for _, folder in folders[:max(0, len(folders) - keep_last)]:
        if folder.name != latest:
            shutil.rmtree(folder)
    for tmp in root.glob(".tmp-step-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def latest(out: Path) -> tuple[Path, dict[str, Any]] | None:
    """``(folder, state)`` of the latest checkpoint under ``out`` (weights not loaded)."""
    pointer = out / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    folder = out / "checkpoints" / pointer.read_text().strip()
    return folder, json.loads((folder / "state.json").read_text())


def load_checkpoint(folder: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    sched: Any, scaler: Any = None) -> None:
    """Restore weights, optimizer, scheduler and random state from ``folder`` (a sharded
    one collectively, on every rank)."""
    blob = torch.load(folder / "trainer.pt", weights_only=False)
    if (folder / "sharded").is_dir():
        fsdp.load_sharded(folder / "sharded", model, opt)
    else:
        load_weights(model, folder)
        opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    if scaler is not None and blob.get("scaler") is not None:
        scaler.load_state_dict(blob["scaler"])
    set_rng_state(blob["rng"])


def load_latest(out: Path, model: nn.Module, opt: torch.optim.Optimizer,
                sched: Any) -> dict[str, Any] | None:
    """Restore the latest checkpoint under ``out``; its state, or None when there is none."""
    found = latest(out)
    if found is None:
        return None
    load_checkpoint(found[0], model, opt, sched)
    return found[1]


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def as_json(value: Any) -> Any:
    """``value`` as it reads back from state.json (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=str))


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(setting, checkpoint's value, this run's value)`` for each fingerprint entry that
    differs, except :data:`RESUME_FREE` ones. A stage's settings sit under ``config`` (shown
    without that prefix); one name is reported once."""
    old, new = _flat(as_json(saved)), _flat(as_json(current))
    seen: dict[str, tuple[str, Any, Any]] = {}
    for key in sorted(old.keys() | new.keys(), key=lambda k: (not k.startswith("config."), k)):
        if key.rsplit(".", 1)[-1] in RESUME_FREE or old.get(key) == new.get(key):
            continue
        name = key.removeprefix("config.")
        seen.setdefault(name, (name, old.get(key, "(none)"), new.get(key, "(none)")))
    return list(seen.values())


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 20 else text[:16] + "…"


def mismatch_message(folder: Path, diffs: list[tuple[str, Any, Any]]) -> str:
    """One sentence naming every differing setting with both values."""
    parts = [f"{name} (checkpoint {_show(old)}, this run {_show(new)})"
             for name, old, new in diffs]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return (f"cannot resume from {folder}: this run differs from what trained the checkpoint "
            f"in {listed}; rerun with the checkpoint's data and settings, or start afresh "
            "without --resume (or in another --out folder)")


def truncate_log(path: Path, step: int) -> None:
    """Keep the records of ``train_log.jsonl`` up to ``step`` (drop the steps the checkpoint
    does not hold, and a line cut short by a killed process)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("step", 0) <= step:
            kept.append(line + "\n")
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    tmp.replace(path)


def verify_resume(out: Path, fingerprint: dict[str, Any], rank: int, cfg: TrainConfig,
                  total: int, schedule_steps: int,
                  lr_lambda: Callable[[TrainConfig, int], Callable[[int], float]],
                  ) -> tuple[Path, dict[str, Any]] | None:
    """The latest checkpoint under ``out`` after checking that the run with ``fingerprint``
    is the one that wrote it (and :func:`check_length`); None when there is none yet."""
    found = latest(out)
    if found is None:
        if (out / "train_log.jsonl").exists():
            raise PreflineError(
                f"cannot resume: {out} has a train_log.jsonl but no checkpoint (the "
                "run stopped before it saved one); start afresh without --resume",
                path=str(out))
        if rank == 0:
            print(f"note: resume: no checkpoint in {out}; training from step 0",
                  file=sys.stderr)
        return None
    folder, state = found
    if "fingerprint" not in state:
        raise PreflineError(f"cannot resume from {folder}: the checkpoint predates "
                            "resume checks (no fingerprint); start afresh without --resume")
    diffs = differences(state["fingerprint"], fingerprint)
    if diffs:
        raise PreflineError(mismatch_message(folder, diffs),
                            field=diffs[0][0] if len(diffs) == 1 else None)
    check_length(folder, state, cfg, total, schedule_steps, lr_lambda)
    return folder, state


def check_length(folder: Path, state: dict[str, Any], cfg: TrainConfig, total: int,
                 schedule_steps: int,
                 lr_lambda: Callable[[TrainConfig, int], Callable[[int], float]]) -> None:
    """max_steps/epochs may change on resume only where the steps already taken would
    have had the same learning rate (``lr_lambda(cfg, length)``) in a run of the new length."""
    done, before = int(state["step"]), int(state.get("schedule_steps", total))
    length = "epochs" if cfg.max_steps is None else "max_steps"
    if done > total:
        raise PreflineError(f"cannot resume from {folder}: the checkpoint is at step {done}, "
                            f"past this run's {total} steps", field=length)
    old, new = lr_lambda(cfg, before), lr_lambda(cfg, schedule_steps)
    if any(not math.isclose(old(s), new(s), rel_tol=1e-12) for s in range(done)):
        raise PreflineError(
            f"cannot resume from {folder}: the checkpoint's run was {before} steps long and "
            f"this one is {total}; with schedule={cfg.schedule} and warmup_ratio="
            f"{cfg.warmup_ratio} the learning rate of the {done} steps already taken "
            "depends on the length (keep max_steps and epochs, or use schedule=constant "
            "and warmup_ratio=0 to extend a run)", field=length)
