"""Mixed precision: bf16 autocast where the hardware has native bf16, fp16 on older GPUs.

CPUs with AMX / AVX-512 BF16 and GPUs that support it get bf16 autocast (fp32 master
weights); GPUs without bf16 (pre-Ampere) get fp16 autocast with a gradient scaler, as fp16
gradients underflow without one; other CPUs run fp32. Autocast always names the device the
model is on, never "the GPU if there is one".
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists amx_bf16 or avx512_bf16 (bf16 matmul ~5x fp32 here)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


def resolve_precision(precision: str,
                      device: str | torch.device | None = None) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (auto | bf16 | fp16 | fp32) on ``device`` (default
    the CPU); None means fp32. auto = bf16 where native, fp16 on a GPU without bf16."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if _device(device).type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def autocast_context(dtype: torch.dtype | None,
                     device: str | torch.device | None = None) -> AbstractContextManager[object]:
    """Autocast to ``dtype`` on ``device``'s type (default the CPU); nothing for fp32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(_device(device).type, dtype=dtype)


def grad_scaler(dtype: torch.dtype | None, device: str | torch.device | None = None,
                ) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 on a GPU (None elsewhere: bf16 and fp32 need none)."""
    if dtype != torch.float16 or _device(device).type != "cuda":
        return None
    return torch.amp.GradScaler("cuda")
