"""The one decode call of the in-process engine: ``k`` completions of each left-padded
prompt, batched, KV-cached.

Everything that samples in-process goes through :func:`decode`: the ``hf`` backend
(``prefline generate``, the LM judge, ``eval policy``, best-of-N) and online training
rollouts. Two ways, kept selectable so the benchmark can compare them (``gen_opt``):

- ``none`` — main's original path: HF ``generate`` on the prompts repeated ``k`` times
  (``num_return_sequences``), HF's own sampler (``torch.multinomial`` on the global RNG, which
  the caller seeds per batch), a ``DynamicCache`` that concatenates at every step.
- ``fast`` (default) — :func:`loop_decode`, our own loop around the model's forward, with
  changes that leave the sampled distribution alone:

  1. **one prefill per prompt**: the prompt goes through the model once and its KV cache is
     written ``k`` times into the rows of its completions, instead of prefilling ``k``
     identical copies;
  2. **a preallocated KV cache** (:class:`BufferLayer`): one buffer per layer sized prompt +
     ``max_new_tokens``; a step writes its position in place and attention reads a view,
     where ``DynamicCache`` copies the whole cache at every step (``torch.cat``);
  3. **a cheap seeded sampler** (:class:`RowSampler`): each row draws its token by inverse
     CDF with *one* uniform from the row's own generator, straight from the logits (no
     ``-inf`` score tensor, no argmax over it). HF's multinomial draws one exponential per
     vocabulary entry per row (49k for SmolLM2). Per-row seeds make a completion depend on
     its seed alone, not on which prompts share its batch (what training needs for DDP and
     resume);
  4. **finished rows leave the batch** once they are 1/8 of it (their cache rows are
     dropped), instead of being computed to the end.

Greedy decoding (temperature 0) takes the same loop with argmax and ``k`` = 1
(tests/generate/test_decode.py checks it gives the same responses as ``none``).

Measured and dropped (docs/benchmarks/generation.md): ``torch.compile`` of the decode step
on CPU (minutes to compile, slower afterwards); length bucketing (the demo's prompts are
36-48 tokens: nothing to gain).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import LogitsProcessor, TopPLogitsWarper
from transformers.cache_utils import DynamicLayer

from prefline.base.errors import PreflineError

_MIX = 1_000_003
_BLOCK = 256


def row_seed(seed: int, step: int, prompt: int, completion: int) -> int:
    """The seed of one completion (stable across batches, processes and resumes)."""
    return (((seed * _MIX + step) * _MIX + prompt) * _MIX + completion) % (2**63 - 1)


def inverse_cdf(probs: Tensor, u: Tensor) -> Tensor:
    """Index drawn from each row of ``probs`` ``(B, V)`` by the uniforms ``u`` ``(B,)``: the
    token t with ``cdf[t-1] <= u·total < cdf[t]`` (a zero-probability token is never drawn).

    Two levels (sums of 256-token blocks, then one block) so the float64 running sum covers
    ``V/256 + 256`` entries per row instead of ``V``; ``total`` absorbs rounding. Each block
    is summed in float32 (its 256 terms lose at most ~1e-7 relative, below the rounding of
    the float32 softmax itself): a float64 sum first made a float64 copy of all of
    ``probs``, 14x slower (measured at 256 rows, 1 thread)."""
    b, v = probs.shape
    nb = -(-v // _BLOCK)
    padded = probs if v == nb * _BLOCK else F.pad(probs, (0, nb * _BLOCK - v))
    blocks = padded.view(b, nb, _BLOCK)
    cum = blocks.sum(-1).double().cumsum(-1)
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

    def draw(self, scores: Tensor, rows: Tensor | None = None) -> Tensor:
        """The next token of each row of ``scores`` ``(B, V)``; ``rows`` (B,): which of the
        sampler's generators they are (default all, in order)."""
        logits = scores.float()
        logits = logits.div_(self.temperature) if logits is not scores else logits / self.temperature
        if self.top_p is not None:
            logits = self.top_p(None, logits)
        gens = self.gens if rows is None else [self.gens[r] for r in rows.tolist()]
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in gens])
        return inverse_cdf(torch.softmax(logits, -1), u.to(scores.device))

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        token = self.draw(scores)
        return torch.full_like(scores, float("-inf")).scatter_(1, token[:, None], 0.0)


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
    if gen_opt == "fast":
        if sample and (seeds is None or len(seeds) != ids.shape[0] * k):
            raise PreflineError("internal: decode needs one seed per completion")
        sampler = RowSampler(seeds or (), temperature, top_p) if sample else None
        with torch.inference_mode():
            return loop_decode(model, ids, mask, k=k, max_new_tokens=max_new_tokens,
                               sampler=sampler, stop_ids=stop_ids, pad_id=pad_id,
                               output_logits=output_logits)
    kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "eos_token_id": list(stop_ids),
                          "pad_token_id": pad_id, "use_cache": True, "top_k": None,
                          "return_dict_in_generate": True, "output_logits": output_logits}
    if sample:
        kw.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                  num_return_sequences=k)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None)
        if k > 1:
            ids, mask = ids.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, **kw)
    new = out.sequences[:, ids.shape[1]:]
    return new, (tuple(out.logits) if output_logits else None)

class BufferLayer(DynamicLayer):  # type: ignore[misc]
    """One layer's KV cache in a buffer allocated once for the whole decode: a step writes its
    position in place and attention reads a view, where ``DynamicLayer`` concatenates (copies
    the whole cache) at every step."""

    def __init__(self, keys: Tensor, values: Tensor, k: int, capacity: int) -> None:
        super().__init__()
        self.device, self.is_initialized, self.n = keys.device, True, keys.shape[2]
        self.kbuf, self.vbuf = (_repeated(t, k, capacity) for t in (keys, values))
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self.kbuf[:, :, :self.n], self.vbuf[:, :, :self.n]

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any,
               **kwargs: Any) -> tuple[Tensor, Tensor]:
        t = key_states.shape[2]
        self.kbuf[:, :, self.n:self.n + t] = key_states
        self.vbuf[:, :, self.n:self.n + t] = value_states
        self.n += t
        self._views()
        return self.kbuf[:, :, :self.n], self.vbuf[:, :, :self.n]

    def batch_select_indices(self, indices: Tensor) -> None:
        self.kbuf, self.vbuf = (_repeated(b[indices, :, :self.n], 1, b.shape[2])
                                for b in (self.kbuf, self.vbuf))
        self._views()


def _buffered(layer: Any, k: int, capacity: int) -> Any:
    """A plain ``DynamicLayer`` as a :class:`BufferLayer` with its rows repeated ``k`` times;
    any other kind (sliding-window, quantised, ...) keeps its own update rule, repeated."""
    if type(layer) is DynamicLayer and layer.keys is not None and layer.values is not None \
            and layer.keys.numel():
        return BufferLayer(layer.keys, layer.values, k, capacity)
    layer.batch_repeat_interleave(k)
    return layer


def _repeated(t: Tensor, k: int, capacity: int) -> Tensor:
    """``t`` ``(B, H, n, D)`` with each row repeated ``k`` times, in a buffer of ``capacity``
    positions."""
    b, h, n, d = t.shape
    buf = t.new_empty(b * k, h, capacity, d)
    buf.view(b, k, h, capacity, d)[:, :, :, :n] = t[:, None]
    return buf


def _forward(model: Any, ids: Tensor, mask: Tensor, positions: Tensor, cache: Any) -> Any:
    return model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                 use_cache=True, logits_to_keep=1)


def loop_decode(model: Any, ids: Tensor, mask: Tensor, *, k: int, max_new_tokens: int,
                sampler: RowSampler | None, stop_ids: Sequence[int], pad_id: int,
                output_logits: bool = False, drop: float = 0.125,
                ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
    """:func:`decode`'s ``fast`` way: prefill each prompt once, then one forward per step on a
    :class:`BufferLayer` cache; finished rows leave the batch once they are ``drop`` of it."""
    p, width = ids.shape
    rows = p * k
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                logits_to_keep=1)
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    cache.layers = [_buffered(lay, k, width + max_new_tokens) for lay in cache.layers]
    logits = out.logits[:, -1].repeat_interleave(k, 0)
    full_mask = torch.ones(rows, width + max_new_tokens, dtype=mask.dtype, device=mask.device)
    full_mask[:, :width] = mask.repeat_interleave(k, 0)
    pos = positions[:, -1].repeat_interleave(k, 0)
    active = torch.arange(rows, device=ids.device)
    live = torch.ones(rows, dtype=torch.bool, device=ids.device)  # per active row
    stops = torch.tensor(list(stop_ids), device=ids.device)
    new = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=ids.device)
    steps: list[Tensor] = []
    for t in range(max_new_tokens):
        token = logits.argmax(-1) if sampler is None else sampler.draw(logits, active)
        new[active[live], t] = token[live]
        if output_logits:
            # raw logits of every row (zero for rows already gone, which nobody reads)
            steps.append(logits.new_zeros(rows, logits.shape[-1], dtype=torch.float32)
                         .index_copy_(0, active, logits.float()))
        live &= ~torch.isin(token, stops)
        if t == max_new_tokens - 1 or not bool(live.any()):
            break
        if int((~live).sum()) >= max(1, int(drop * len(active))):
            keep = live.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            active, token, pos, full_mask, live = (x[keep] for x in
                                                   (active, token, pos, full_mask, live))
        pos = pos + 1
        out = _forward(model, token[:, None], full_mask[:, :width + t + 1], pos[:, None], cache)
        logits = out.logits[:, -1]
    return new[:, :t + 1], (tuple(steps) if output_logits else None)
