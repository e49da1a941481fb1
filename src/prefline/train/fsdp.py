"""FSDP2 for the one engine: shard, keep gradients in step, save and gather.

``fully_shard`` (torch.distributed.fsdp, "FSDP2") shards each transformer layer's parameters,
gradients and optimizer state across the processes of a torchrun job, then the rest (the
embeddings, the head) at the root; a layer's full weights exist only while it computes.
Works with gloo on CPUs (the tested path) and NCCL on GPUs; LoRA adapters are sharded with
their layer, frozen base weights stay frozen. Checkpoints are sharded through
``torch.distributed.checkpoint`` (each process writes its shard; any number of processes
reads them back). :func:`gather` turns the trained model back into a plain module for export.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, fully_shard
from torch.utils.checkpoint import checkpoint

from prefline.base.distributed import place
from prefline.train.train_config import TrainConfig

_SAVED = StateDictOptions(ignore_frozen_params=True)
"""Checkpoints hold what training changes (under LoRA only the adapters), like the DDP ones."""


def wrap(model: nn.Module, cfg: TrainConfig, device: torch.device, world: int,
         ) -> tuple[nn.Module, nn.Module | None]:
    """The engine's model: on ``device``, checkpointed per layer if asked, then DDP-wrapped
    or FSDP-sharded under torchrun (one process trains it as it is); and, under FSDP, the
    :func:`skeleton` that :func:`gather` fills at the end (else None)."""
    model = place(model, device)
    sharded = cfg.strategy == "fsdp" and world > 1
    plain = skeleton(model) if sharded else None
    if cfg.activation_checkpointing:
        checkpoint_layers(model)
    if sharded:
        return shard(model, device, world, cpu_offload=cfg.cpu_offload), plain
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids), None
    return model, None


def layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard (and checkpoint) one by one: the classes a Hugging Face
    model names in ``_no_split_modules``, else the entries of every ModuleList."""
    names: set[str] = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or ())
    found = [m for m in model.modules() if type(m).__name__ in names]
    if found:
        return found
    return [m for lst in model.modules() if isinstance(lst, nn.ModuleList) for m in lst]


def checkpoint_layers(model: nn.Module) -> int:
    """Recompute each layer's activations in backward (non-reentrant, so keyword arguments
    and frozen inputs work); returns how many layers. Hooks on ``__call__`` (FSDP's) still
    run, since only ``forward`` is wrapped."""
    blocks = layers(model)
    for block in blocks:
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)  # type: ignore[method-assign]
    return len(blocks)


def skeleton(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with its parameters on the meta device (no memory), buffers real:
    what :func:`gather` fills with the trained weights. Taken before sharding."""
    memo: dict[int, Any] = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in model.parameters()}
    return copy.deepcopy(model, memo)


def shard(model: nn.Module, device: torch.device, world: int, *, cpu_offload: bool = False,
          ) -> nn.Module:
    """Apply ``fully_shard`` to every layer, then to the root; ``model`` is changed in place
    (its parameters become DTensors). Build the optimizer after this."""
    mesh = init_device_mesh(device.type, (world,))
    kw: dict[str, Any] = {"mesh": mesh}
    if cpu_offload and device.type == "cuda":
        kw["offload_policy"] = CPUOffloadPolicy()
    for block in layers(model):
        fully_shard(block, **kw)
    fully_shard(model, **kw)
    return model


@contextmanager
def no_sync(model: nn.Module) -> Iterator[None]:
    """Accumulate gradients locally (no reduce-scatter) for a micro-batch that is not the
    step's last; the DDP ``no_sync`` of FSDP2."""
    assert isinstance(model, FSDPModule)
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def save_sharded(folder: Path, model: nn.Module, opt: torch.optim.Optimizer | None) -> None:
    """Every process writes its shard of the trainable weights (and optimizer) to
    ``folder`` (collective: all ranks call it)."""
    if opt is None:
        state: dict[str, Any] = {"model": get_model_state_dict(model, options=_SAVED)}
    else:
        msd, osd = get_state_dict(model, opt, options=_SAVED)
        state = {"model": msd, "optim": osd}
    dcp.save(state, checkpoint_id=str(folder))


def load_sharded(folder: Path, model: nn.Module, opt: torch.optim.Optimizer | None) -> None:
    """Read back what :func:`save_sharded` wrote (collective), resharded for this job."""
    if opt is None:
        msd = get_model_state_dict(model, options=_SAVED)
        dcp.load({"model": msd}, checkpoint_id=str(folder))
        set_state_dict(model, [], model_state_dict=msd, optim_state_dict={}, options=_SAVED)
        return
    msd, osd = get_state_dict(model, opt, options=_SAVED)
    dcp.load({"model": msd, "optim": osd}, checkpoint_id=str(folder))  # fills them in place
    set_state_dict(model, opt, model_state_dict=msd, optim_state_dict=osd, options=_SAVED)


def gather(model: nn.Module, plain: nn.Module, device: torch.device) -> nn.Module:
    """``plain`` (a :func:`skeleton` of ``model``) holding ``model``'s full trained weights,
    on ``device``, outside FSDP: what export and single-process evaluation use. Collective:
    every rank calls it and every rank gets the model."""
    full: dict[str, Any] = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True))
    ties = _tied(plain)
    plain.to_empty(device="cpu")  # makes a new tensor per name: tied weights come apart
    for names in ties:
        shared = plain.get_parameter(names[0])
        for name in names[1:]:
            owner, _, leaf = name.rpartition(".")
            setattr(plain.get_submodule(owner), leaf, shared)
    with torch.no_grad():
        plain.load_state_dict({k: v.detach().cpu() for k, v in full.items()}, strict=False)
        # Buffers are not sharded; non-persistent ones (rotary tables) are in no state dict.
        buffers = dict(model.named_buffers())
        for name, buf in plain.named_buffers():
            if name in buffers:
                buf.copy_(buffers[name].detach().cpu())
    return plain.to(device)


def _tied(model: nn.Module) -> list[list[str]]:
    """Names that share one parameter (an LM head tied to the embeddings), grouped."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def norm_value(norm: torch.Tensor) -> float:
    """A gradient norm as a float (clip_grad_norm_ over DTensors returns a DTensor)."""
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)
