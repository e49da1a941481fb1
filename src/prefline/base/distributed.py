"""The one process-group setup: torchrun sets ``WORLD_SIZE``/``RANK``; we join its group.

gloo on CPUs (the tested path); NCCL where the process owns a CUDA device. Every stage that
runs under torchrun calls :func:`init_distributed` and never ``init_process_group`` itself.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in the job (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group on first call."""
    world = world_size()
    if world <= 1:
        return 0, 1
    # torch is imported here, not at the top: the CLI asks rank() at start-up and must not
    # pay for torch before a stage needs it.
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
