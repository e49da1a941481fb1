"""Per-segment attention for packed encoder rows: no work on masked-out blocks.

A packed row (:mod:`prefline.models.packing`) holds prompt groups side by side; under its
block-diagonal 4-D mask a response sees its prompt and itself only, and prompt tokens see
the prompt only. torch's fused CPU attention computes the whole ``W × W`` block of a row and
masks it afterwards, and its backward was ~40% of a MiniLM training step (one-thread
profile, busy machine; rows up to ~700 tokens, where a group's useful block is only
``P² + Σ r_i (P + r_i)``). Here each segment attends on its own, with no mask: the prompt
to itself, each response to ``prompt + itself``: the same keys and the same softmax as under
the mask, so the same results (tested against the masked path), without the masked-out
blocks and without building or reading an ``[R, 1, W, W]`` mask, so all sequences of a batch
can share one row with no padding at all.

The per-segment products are plain matmuls and a softmax: torch's fused kernel has a large fixed cost per call in its backward, which made
one fused call per segment no faster than the masked row (A/B in docs/benchmarks/reward.md).

Bidirectional (encoder) packing only: a decoder's response also needs a causal mask offset
by its prompt; decoders keep the 4-D mask.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from prefline.models.packing import Span

NAME = "prefline_segments"
"""The attention implementation's name in Hugging Face's registry."""


def _attend(q: Tensor, k: Tensor, v: Tensor, scaling: float, dropout: float,
            training: bool) -> Tensor:
    """``[heads, Lq, d]`` queries over ``[heads, Lk, d]`` keys/values, no mask."""
    # softmax in the scores' dtype: torch's CPU kernel accumulates in fp32 and rounds once,
    # and autograd keeps only these probabilities (bf16 under autocast), not an fp32 copy
    probs = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * scaling, -1)
    if dropout:
        probs = F.dropout(probs, dropout, training)
    return torch.matmul(probs, v)


def segment_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                      attention_mask: Tensor | None, dropout: float = 0.0,
                      scaling: float | None = None, **kwargs: Any) -> tuple[Tensor, None]:
    """Hugging Face attention function: ``[R, heads, W, d]`` in, ``[R, W, heads, d]`` out.

    ``prefline_spans`` (a keyword the backbone passes through to its attention layers):
    each row's spans in column order (:attr:`Packed.spans`); columns after the last span
    are padding, whose output is zero (no real token attends to it)."""
    spans: Sequence[Sequence[Span]] = kwargs["prefline_spans"]
    scale = scaling if scaling is not None else query.size(-1) ** -0.5
    rows = []
    for r, row in enumerate(spans):
        tail = query.size(2) - (row[-1][1] if row else 0)
        sizes = [e - s for s, e, _ in row] + ([tail] if tail else [])
        # split, not slicing: a split's backward is one concatenation, while every slice's
        # backward would write a full-width zero gradient
        qs, ks, vs = (t[r].split(sizes, 1) for t in (query, key, value))
        piece = {s: i for i, (s, _, _) in enumerate(row)}
        parts = []
        for i, (_, _, keys) in enumerate(row):
            k = torch.cat([ks[piece[a]] for a, _ in keys], 1) if len(keys) > 1 else ks[i]
            v = torch.cat([vs[piece[a]] for a, _ in keys], 1) if len(keys) > 1 else vs[i]
            parts.append(_attend(qs[i], k, v, scale, dropout, module.training))
        if tail:
            parts.append(query.new_zeros((query.size(1), tail, query.size(3))))
        rows.append(torch.cat(parts, 1))
    return torch.stack(rows).transpose(1, 2).contiguous(), None


@contextmanager
def segments_on(backbone: nn.Module) -> Iterator[None]:
    """Route ``backbone``'s attention through :func:`segment_attention` for one forward;
    the config's own setting comes back afterwards (saved and exported configs never name
    it). The backbone must be called with ``prefline_spans=`` and no attention mask."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, segment_attention)
    config: Any = backbone.config
    before = config._attn_implementation
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = before
