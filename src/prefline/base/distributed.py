"""The one process-group and device setup: torchrun sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``.

Devices are resolved here, once per run (the stage's ``Context`` asks): ``auto`` means the
CUDA device this process owns when CUDA is present, else the CPU; under torchrun
``LOCAL_RANK`` picks the GPU. NCCL on CUDA, gloo on CPUs (the tested path). Every stage that
runs under torchrun calls :func:`init_distributed` and never ``init_process_group`` itself.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
from typing import TYPE_CHECKING, Any, TypeVar

from prefline.base.errors import PreflineError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")
M = TypeVar("M", bound="torch.nn.Module")


def world_size() -> int:
    """Processes in the job (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its node (0 when not launched by torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def check_device(spec: str) -> None:
    """Refuse anything but auto, cpu, cuda or cuda:N (torch-free: the CLI checks early)."""
    kind, _, index = spec.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise PreflineError(f"expected auto, cpu, cuda or cuda:N, got {spec!r}", field="device")


def pick_device(spec: str, *, cuda_count: int, local: int = 0) -> str:
    """The device ``spec`` means on a machine with ``cuda_count`` GPUs for local rank
    ``local``: ``cpu`` or ``cuda:N`` (pure, so the rule is tested without a GPU)."""
    check_device(spec)
    kind, _, index = spec.partition(":")
    if kind == "cpu" or (kind == "auto" and cuda_count == 0):
        return "cpu"
    if cuda_count == 0:
        raise PreflineError(f"--device {spec} asks for a GPU but torch sees no CUDA device "
                            "(a CPU build of torch, or no driver); use --device cpu or auto",
                            field="device")
    # An explicit cuda:N wins; otherwise torchrun's LOCAL_RANK picks this process's GPU.
    n = int(index) if index else local
    if n >= cuda_count:
        raise PreflineError(f"--device {spec} names GPU {n} but only {cuda_count} are visible "
                            f"(local rank {local})", field="device")
    return f"cuda:{n}"


def resolve_device(spec: str) -> torch.device:
    """The torch device of ``spec`` in this process (see :func:`pick_device`)."""
    # torch is imported here, not at the top: the CLI imports this module at start-up and
    # must not pay for torch before a stage needs it.
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = torch.device(pick_device(spec, cuda_count=count, local=local_rank()))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def backend_for(device_type: str) -> str:
    """NCCL for CUDA processes (when built in), gloo otherwise."""
    import torch.distributed as dist

    return "nccl" if device_type == "cuda" and dist.is_nccl_available() else "gloo"


def init_distributed(device: str | None = None) -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group on first call. ``device`` is
    the run's device spec (None: auto)."""
    world = world_size()
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend_for(resolve_device(device or "auto").type))
        # Leave the group explicitly at exit: a gloo group torn down by the interpreter's
        # finalisers while the peer is still working can abort (SIGABRT) the process.
        atexit.register(_leave_group)
    return dist.get_rank(), dist.get_world_size()


def _leave_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        with contextlib.suppress(Exception):  # already exiting; the outcome is decided
            dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor inside it (dicts, lists, tuples, dataclasses) on ``device``."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(to_device(v, device) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        moved = {f.name: to_device(getattr(obj, f.name), device)
                 for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **moved)
    return obj


def place(module: M, device: torch.device) -> M:
    """Move ``module`` to ``device``; off the CPU also move every input of its forward there,
    so batches built anywhere (training, evaluation, reference log-probs) follow the model.
    On the CPU nothing is hooked: the default path pays nothing per call."""
    module.to(device)
    if device.type != "cpu" and not getattr(module, "_prefline_device", None):
        def move(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return to_device(args, device), to_device(kwargs, device)

        module.register_forward_pre_hook(move, with_kwargs=True)
        module._prefline_device = device  # type: ignore[assignment]
    return module
