"""The one decode call of the in-process engine: HF ``generate`` (batched, KV-cached) on
left-padded token ids, ``k`` completions per prompt.

Everything that samples in-process goes through :func:`decode`: the ``hf`` backend
(``prefline generate``, the LM judge, ``eval policy``) and online training rollouts. Two
ways, kept selectable so the benchmark can compare them (``gen_opt``):

- ``none`` — main's original path: the prompts repeated ``k`` times before the prefill, and
  HF's own sampler (``torch.multinomial`` on the global RNG, which the caller seeds).
- ``fast`` (default) — two changes that leave the distribution alone:

  1. **one prefill per prompt**: all but the last prompt token go through the model once per
     distinct prompt and the KV cache is repeated ``k`` times (``batch_repeat_interleave``),
     instead of prefilling ``k`` identical copies;
  2. **a cheap seeded sampler** (:class:`RowSampler`): each row draws its token by inverse CDF
     with *one* uniform from the row's own generator. HF's multinomial draws one exponential
     per vocabulary entry per row (49k for SmolLM2): measured at 64 rows, 20% of a decode
     step (docs/benchmarks/generation.md). Per-row seeds also make a completion independent
     of which other prompts share its batch (what training needs for DDP and resume).

Greedy decoding (temperature 0) is the same call on both ways: ``k`` is 1, nothing is shared
and no sampler runs (tests/generate/test_decode.py checks the token ids are equal).

Levers measured and dropped (same document): a static KV cache (no gain without compile) and
``torch.compile`` of the decode step on CPU (minutes to compile and slower afterwards).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import LogitsProcessor, LogitsProcessorList, TopPLogitsWarper

from prefline.base.errors import PreflineError

GEN_OPTS = ("fast", "none")
"""``fast``: shared prefill + :class:`RowSampler`; ``none``: main's original path."""

_MIX = 1_000_003
_BLOCK = 256


def row_seed(seed: int, step: int, prompt: int, completion: int) -> int:
    """The seed of one completion (stable across batches, processes and resumes)."""
    return (((seed * _MIX + step) * _MIX + prompt) * _MIX + completion) % (2**63 - 1)


def check_gen_opt(value: str) -> str:
    if value not in GEN_OPTS:
        raise PreflineError(f"gen_opt must be one of {', '.join(GEN_OPTS)}, got {value!r}",
                            field="gen_opt")
    return value


def cut_at_stop(ids: Sequence[int], stop_ids: Sequence[int]) -> list[int]:
    """``ids`` up to and including the first stop token (what follows is padding)."""
    stops = set(stop_ids)
    cut = next((t + 1 for t, tid in enumerate(ids) if tid in stops), len(ids))
    return list(ids[:cut])


def inverse_cdf(probs: Tensor, u: Tensor) -> Tensor:
    """Index drawn from each row of ``probs`` ``(B, V)`` by the uniforms ``u`` ``(B,)``: the
    token t with ``cdf[t-1] <= u·total < cdf[t]`` (a zero-probability token is never drawn).

    Two levels (sums of 256-token blocks, then one block) so the float64 running sum covers
    ``V/256 + 256`` entries per row instead of ``V``; ``total`` absorbs rounding."""
    b, v = probs.shape
    nb = -(-v // _BLOCK)
    padded = probs if v == nb * _BLOCK else F.pad(probs, (0, nb * _BLOCK - v))
    blocks = padded.view(b, nb, _BLOCK)
    cum = blocks.sum(-1, dtype=torch.float64).cumsum(-1)
    target = u.to(cum) * cum[:, -1]
    # the first block whose running sum reaches the total is the last non-empty one
    last = (cum < cum[:, -1:]).sum(-1)
    blk = torch.minimum(torch.searchsorted(cum, target[:, None], right=True).squeeze(1), last)
    before = torch.where(blk > 0, cum.gather(1, (blk - 1).clamp(min=0)[:, None]).squeeze(1),
                         torch.zeros_like(target))
    inner = blocks[torch.arange(b, device=probs.device), blk].double().cumsum(-1)
    last_in = (inner < inner[:, -1:]).sum(-1)
    pos = torch.searchsorted(inner, (target - before)[:, None], right=True).squeeze(1)
    return blk * _BLOCK + torch.minimum(pos, last_in)


class RowSampler(LogitsProcessor):  # type: ignore[misc]
    """Draws each row's next token from ``softmax(logits / temperature)`` (cut to the top-p
    nucleus exactly as HF's ``TopPLogitsWarper`` cuts it) with one uniform from the row's own
    generator, and returns scores that are 0 at the drawn token and -inf elsewhere, so
    ``generate``'s greedy step picks it."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float = 1.0) -> None:
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.top_p = TopPLogitsWarper(top_p) if top_p < 1.0 else None

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        logits = scores.float() / self.temperature
        if self.top_p is not None:
            logits = self.top_p(input_ids, logits)
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.gens])
        token = inverse_cdf(torch.softmax(logits, -1), u.to(scores.device))
        return torch.full_like(scores, float("-inf")).scatter_(1, token[:, None], 0.0)


def shared_prefill(model: Any, ids: Tensor, mask: Tensor, k: int) -> Any:
    """The KV cache of all but the last token of each prompt, computed once per prompt and
    repeated ``k`` times (rows prompt-major, like ``num_return_sequences``)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1],
                position_ids=positions[:, :-1], use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(k)
    return cache


def decode(model: Any, ids: Tensor, mask: Tensor, *, k: int, max_new_tokens: int,
           temperature: float, top_p: float, stop_ids: Sequence[int], pad_id: int,
           seeds: Sequence[int] | None = None, gen_opt: str = "fast",
           output_logits: bool = False) -> tuple[Tensor, tuple[Tensor, ...] | None]:
    """``k`` completions of each left-padded prompt ``(P, L)``: new token ids ``(P·k, T ≤
    max_new_tokens)``, prompt-major, ``pad_id`` after a row's stop token; and with
    ``output_logits`` the raw logits of each step (before temperature and top-p).

    ``seeds``: one per completion for ``fast`` (``P·k``); ``none`` samples from the global
    RNG (seed it first) and ignores them. Temperature 0 is greedy (then pass ``k`` = 1)."""
    sample = temperature > 0
    kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "eos_token_id": list(stop_ids),
                          "pad_token_id": pad_id, "use_cache": True, "top_k": None,
                          "return_dict_in_generate": True, "output_logits": output_logits}
    if sample and gen_opt == "none":
        kw.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                  num_return_sequences=k)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None)
        if sample:
            if seeds is None or len(seeds) != ids.shape[0] * k:
                raise PreflineError("internal: decode needs one seed per completion")
            kw["logits_processor"] = LogitsProcessorList([RowSampler(seeds, temperature, top_p)])
        if k > 1:
            ids, mask = ids.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
    with torch.inference_mode():
        if gen_opt == "fast" and k > 1 and ids.shape[1] > 1:
            kw["cache"] = shared_prefill(model, ids[::k], mask[::k], k)
        out = model.generate(input_ids=ids, attention_mask=mask, **kw)
    new = out.sequences[:, ids.shape[1]:]
    return new, (tuple(out.logits) if output_logits else None)
