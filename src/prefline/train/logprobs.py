"""Summed response log-probs from packed rows, without full B×T×V logits.

Only the hidden states that predict a response token are sent through the LM head, in
chunks, each under activation checkpointing: the forward keeps one chunk of logits at a
time and the backward recomputes it, so peak memory is ``chunk × vocab`` instead of
``rows × T × vocab`` (for SmolLM2 at 8 pairs × 256 tokens: ~50 MB instead of ~1.6 GB fp32).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from prefline.train.policy_batch import PackedBatch


def _token_logps(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor,
                 softcap: float | None) -> Tensor:
    logits = F.linear(hidden, weight, bias).float()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    picked = logits.gather(-1, targets[:, None]).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def chunked_token_logps(hidden: Tensor, head: Any, targets: Tensor, chunk: int = 512,
                        softcap: float | None = None) -> Tensor:
    """``log p(targets[i] | hidden[i])`` for hidden ``(N, H)``, targets ``(N,)`` -> ``(N,)`` fp32.

    ``head`` is the LM head (an ``nn.Linear``-like module with ``weight`` ``(V, H)``)."""
    weight, bias = head.weight, getattr(head, "bias", None)
    parts = []
    for i in range(0, hidden.shape[0], chunk):
        h, t = hidden[i:i + chunk], targets[i:i + chunk]
        if torch.is_grad_enabled():
            parts.append(checkpoint(_token_logps, h, weight, bias, t, softcap, use_reentrant=False))
        else:
            parts.append(_token_logps(h, weight, bias, t, softcap))
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def _mask_for(model: nn.Module, mask: Tensor, dtype: torch.dtype) -> Tensor:
    """SDPA and flex take a boolean mask; eager attention wants an additive float one."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", "sdpa")
    if impl == "eager":
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    return mask


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type``; False for a device autocast does not know
    (``meta``, used to place models without memory), where asking it raises."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except RuntimeError:
        return False


@contextmanager
def _autocast_casts_lora_inputs(lm: nn.Module, device_type: str) -> Iterator[None]:
    """Under autocast, peft's LoRA layers skip casting their input to the adapters' fp32:
    autocast casts it to bf16 for the adapter's matmul anyway, so the result is the same
    while two casts of the activation (forward and backward) per layer are saved."""
    layers = ([m for m in lm.modules() if hasattr(m, "lora_A")]
              if _autocast_on(device_type) else [])
    before = [getattr(m, "cast_input_dtype_enabled", True) for m in layers]
    for m in layers:
        setattr(m, "cast_input_dtype_enabled", False)  # noqa: B010 - an nn.Module attribute
    try:
        yield
    finally:
        for m, value in zip(layers, before, strict=True):
            setattr(m, "cast_input_dtype_enabled", value)  # noqa: B010


class SequenceLogps(nn.Module):
    """Wraps a causal LM: ``forward(batch)`` -> summed log-probs of each packed response,
    shape ``(responses,)`` in the batch's numbering (``(2n,)`` for pairs).

    The training engine wraps *this* module in DDP, so the whole computation, LM head
    included, runs inside DDP's forward and gradients are synchronised correctly.
    """

    def __init__(self, lm: nn.Module, chunk: int = 512) -> None:
        super().__init__()
        self.lm = lm
        self.chunk = chunk
        cfg = getattr(lm, "config", None)
        self.softcap = getattr(cfg, "final_logit_softcapping", None)

    def forward(self, batch: PackedBatch) -> Tensor:
        lm: Any = self.lm
        backbone = lm.get_decoder()
        param = next(lm.parameters())
        mask = _mask_for(lm, batch.attention_mask, param.dtype)
        with _autocast_casts_lora_inputs(lm, param.device.type):
            out = backbone(input_ids=batch.input_ids, attention_mask=mask,
                           position_ids=batch.position_ids, use_cache=False)
        hidden = out.last_hidden_state[batch.pred_rows, batch.pred_cols]
        head = lm.get_output_embeddings()
        tok = chunked_token_logps(hidden, head, batch.targets, self.chunk, self.softcap)
        sums = torch.zeros(batch.lengths.numel(), dtype=torch.float32, device=tok.device)
        return sums.index_add(0, batch.owner, tok)
