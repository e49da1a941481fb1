"""Sampling inside online training: k completions per prompt, batched and KV-cached.

:func:`generate_tokens` is the one call into a generation engine (today in-process Hugging
Face ``generate``; a vLLM backend with weight sync slots in there). Everything else here is
engine-free: :func:`sample_rollout` lays prompts and completions out as tensors,
:func:`token_logps` scores them under any model.

Why per-row seeds: a completion must not depend on which other prompts share its batch, or
on which process samples it, so that 2 processes equal 1 and a resumed run equals an
uninterrupted one. Each completion draws its own Gumbel noise from a generator seeded by
``(seed, step, prompt index, completion index)``; the argmax of ``logits / T + Gumbel`` is
an exact sample from ``softmax(logits / T)`` (the Gumbel-max trick), so greedy ``generate``
with that noise added samples while keeping HF's batching and KV cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn
from transformers import LogitsProcessor, LogitsProcessorList

from prefline.train.logprobs import chunked_token_logps

_MIX = 1_000_003


def row_seed(seed: int, step: int, prompt: int, completion: int) -> int:
    """The seed of one completion (stable across batches, processes and resumes)."""
    return (((seed * _MIX + step) * _MIX + prompt) * _MIX + completion) % (2**63 - 1)


class _SeededGumbel(LogitsProcessor):  # type: ignore[misc]
    """Adds each row's own Gumbel noise to ``logits / temperature`` (see module docstring)."""

    def __init__(self, seeds: Sequence[int], temperature: float) -> None:
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        vocab = scores.shape[-1]
        u = torch.stack([torch.rand(vocab, generator=g, dtype=torch.float64) for g in self.gens])
        gumbel = -torch.log(-torch.log(u.clamp(1e-300, 1 - 1e-16)))
        return scores.float() / self.temperature + gumbel.to(scores.device, torch.float32)


def generate_tokens(model: Any, input_ids: Tensor, attention_mask: Tensor, *,
                    max_new_tokens: int, temperature: float, stop_ids: Sequence[int],
                    pad_id: int, seeds: Sequence[int]) -> Tensor:
    """New token ids ``(B, ≤ max_new_tokens)`` for left-padded prompts ``(B, L)``, one seed per
    row; after a stop token a row holds ``pad_id``. Temperature 0 is greedy."""
    noise = [] if temperature == 0 else [_SeededGumbel(seeds, temperature)]
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, do_sample=False,
            max_new_tokens=max_new_tokens, logits_processor=LogitsProcessorList(noise),
            eos_token_id=list(stop_ids), pad_token_id=pad_id, use_cache=True,
            temperature=None, top_p=None, top_k=None)
    return out[:, input_ids.shape[1]:].clone()


@dataclass
class Rollout:
    """Prompts (left-padded, each repeated k times, adjacent) and their sampled completions
    (right-padded); ``B = prompts × k`` rows."""

    prompt_ids: Tensor
    prompt_mask: Tensor
    completion_ids: Tensor
    completion_mask: Tensor
    """float, 1.0 on sampled tokens up to and including the first stop token."""

    def rows(self) -> int:
        return int(self.completion_ids.shape[0])


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """``(ids, mask)`` of token rows, left-padded to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids, mask


def completion_mask(ids: Tensor, stop_ids: Sequence[int]) -> Tensor:
    """1.0 up to and including each row's first stop token (every token when none)."""
    is_stop = torch.isin(ids, torch.tensor(list(stop_ids), dtype=ids.dtype, device=ids.device))
    after = (is_stop.cumsum(-1) - is_stop.long()) > 0  # strictly after the first stop
    return (~after).float()


def sample_rollout(model: Any, prompts: Sequence[Sequence[int]], *, k: int,
                   max_new_tokens: int, temperature: float, stop_ids: Sequence[int],
                   pad_id: int, seeds: Sequence[int]) -> Rollout:
    """``k`` completions of each tokenised prompt; ``seeds`` has one entry per completion
    (``len(prompts) * k``, prompt-major). The model is put in eval mode and left so. The
    rollout's tensors are on the model's device."""
    rows = [p for p in prompts for _ in range(k)]
    device = next(model.parameters()).device
    ids, mask = (t.to(device) for t in left_pad(rows, pad_id))
    model.eval()
    new = generate_tokens(model, ids, mask, max_new_tokens=max_new_tokens,
                          temperature=temperature, stop_ids=stop_ids, pad_id=pad_id,
                          seeds=seeds)
    if new.shape[1] == 0:  # every row stopped at once is impossible; guard the shapes anyway
        new = torch.full((len(rows), 1), pad_id, dtype=torch.long, device=device)
    return Rollout(ids, mask, new, completion_mask(new, stop_ids))


def token_logps(model: nn.Module, rollout: Rollout, temperature: float = 1.0,
                values: nn.Module | None = None, chunk: int = 512) -> tuple[Tensor, Tensor | None]:
    """Per-token log-probs ``(B, T)`` of the completions under ``model`` (logits divided by
    ``temperature``, the distribution they were sampled from; 0 on padding), and with
    ``values`` (a module mapping hidden states ``(B, T, H)`` to ``(B, T)``) the value of each
    completion token's state. Positions count real tokens only, as ``generate`` did for
    left-padded prompts.

    Only the hidden states of real completion tokens go through the LM head, in checkpointed
    chunks (:func:`prefline.train.logprobs.chunked_token_logps`), so logits never exist for
    the whole ``B × T × vocabulary`` at once. The temperature is folded into the head:
    ``(W h)/T = (W/T) h``, and a soft cap ``c·tanh(z/c)/T = (c/T)·tanh((z/T)/(c/T))``."""
    lm: Any = model
    device = next(lm.parameters()).device
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1).to(device)
    mask = torch.cat([rollout.prompt_mask, rollout.completion_mask.long()], 1).to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    t = rollout.completion_ids.shape[1]
    out = lm.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=positions,
                           use_cache=False)
    # The state *before* each completion token predicts it (and its value).
    hidden = out.last_hidden_state[:, -(t + 1):-1]
    real = rollout.completion_mask.to(device) > 0
    head = lm.get_output_embeddings()
    bias = getattr(head, "bias", None)
    scaled = SimpleNamespace(weight=head.weight / temperature,
                             bias=None if bias is None else bias / temperature)
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    picked = chunked_token_logps(hidden[real], scaled, rollout.completion_ids.to(device)[real],
                                 chunk, softcap / temperature if softcap else None)
    logps = torch.zeros(real.shape, dtype=torch.float32, device=device).masked_scatter(real,
                                                                                      picked)
    return logps, (values(hidden) if values is not None else None)
