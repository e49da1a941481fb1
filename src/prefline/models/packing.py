"""Packed rows with shared prompts: every response to a prompt scored in one pass, no pad compute.

Sequences arrive as token ids whose first ``segments[i]`` tokens are the prompt part. Those
with an identical prompt part form a *group*: the prompt is laid out once, followed by each
response. A 4-D boolean mask lets

- prompt tokens attend to the prompt only, and
- response tokens attend to the prompt and to their own response only,

(and, for decoders, only backwards). Position ids restart per group and continue from the
prompt into each response, so a decoder gets exactly the hidden states it would get for
``prompt + response`` alone. For bidirectional encoders this fixes one modelling choice —
prompt tokens do not look at the response — and scoring a response alone uses the same mask,
so shared and per-response scoring agree (tested). Groups are placed first-fit-decreasing
into rows as wide as the widest group (or ``width``, if wider); the unfilled tails of rows
are the only padding. This is prefline's one packer: reward models (pooled scores) and policy
training (:mod:`prefline.train.policy_batch`, summed response log-probs) both lay out their
rows with it.
One forward per micro-batch also means bf16 weight casts and weight-gradient accumulation
happen once, not once per length bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

Span = tuple[int, int, tuple[tuple[int, int], ...]]
"""(query start, query end, key ranges): columns of one row, ends exclusive."""


@dataclass
class Packed:
    input_ids: Tensor
    """``[R, W]``"""
    position_ids: Tensor
    token_type_ids: Tensor
    member: Tensor
    """``[R*W]`` sequence owning each response token; -1 prompt tokens, -2 padding."""
    group: Tensor
    """``[R*W]`` group of each token, -1 for padding."""
    seq_group: Tensor
    """``[N]`` group of each sequence."""
    first: Tensor
    """``[N]`` flat index of each sequence's first token (its group's first prompt token)."""
    last: Tensor
    """``[N]`` flat index of each sequence's last token."""
    lengths: Tensor
    n: int
    n_groups: int
    real_tokens: int
    padded_tokens: int
    causal: bool
    spans: list[list[Span]]
    """Per row, in column order: (query start, query end, key ranges) of each prompt and
    response: the attention the mask allows, for per-segment attention
    (:mod:`prefline.models.segment_attention`)."""

    @property
    def pad_fraction(self) -> float:
        return 1 - self.real_tokens / max(1, self.padded_tokens)

    @cached_property
    def attention_mask(self) -> Tensor:
        """``[R, 1, W, W]`` bool, True = may attend; built on first use (per-segment
        attention needs none, and for one wide row it is the largest tensor of the batch)."""
        group = self.group.view(self.input_ids.shape)
        member = self.member.view(self.input_ids.shape)
        same_group = group.unsqueeze(2) == group.unsqueeze(1)
        key_ok = (member.unsqueeze(1) == -1) | (member.unsqueeze(1) == member.unsqueeze(2))
        mask = same_group & key_ok
        if self.causal:
            w = self.input_ids.shape[1]
            mask &= torch.ones((w, w), dtype=torch.bool, device=mask.device).tril()
        return mask.unsqueeze(1)


def first_fit(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Rows of item indices, longest first, each row's total length ≤ ``width``."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(width - lengths[i])
    return rows


def _groups(seqs: Sequence[Sequence[int]], segments: Sequence[int],
            share: bool) -> list[tuple[int, list[int]]]:
    """[(prompt length, member indices)] in first-seen order."""
    found: dict[object, tuple[int, list[int]]] = {}
    for i, s in enumerate(seqs):
        p = segments[i] if share else 0
        key: object = (p, tuple(s[:p])) if p else ("solo", i)
        found.setdefault(key, (p, []))[1].append(i)
    return list(found.values())


def pack(seqs: Sequence[Sequence[int]], pad_id: int, segments: Sequence[int],
         causal: bool = False, share: bool = True, width: int = 0) -> Packed:
    """Pack token-id lists; ``segments[i]``: length of sequence i's prompt part (type 0).

    A row holds at most ``max(width, largest group)`` tokens: a larger ``width`` puts more
    groups in one row (fewer, longer rows)."""
    groups = _groups(seqs, segments, share)
    sizes = [p + sum(len(seqs[i]) - p for i in members) for p, members in groups]
    rows = first_fit(sizes, max(width, max(sizes)))
    w = max(sum(sizes[g] for g in row) for row in rows)  # no row is padded past the fullest
    shape = (len(rows), w)
    ids = torch.full(shape, pad_id, dtype=torch.long)
    pos, types = torch.zeros(shape, dtype=torch.long), torch.zeros(shape, dtype=torch.long)
    member, group = torch.full(shape, -2, dtype=torch.long), torch.full(shape, -1, dtype=torch.long)
    n = len(seqs)
    seq_group, first, last = (torch.zeros(n, dtype=torch.long) for _ in range(3))
    spans: list[list[Span]] = [[] for _ in rows]
    for r, row in enumerate(rows):
        col = 0
        for g in row:
            p, members = groups[g]
            base = col
            prompt = ((base, base + p),) if p else ()
            if p:
                spans[r].append((base, base + p, prompt))
                ids[r, col:col + p] = torch.tensor(seqs[members[0]][:p], dtype=torch.long)
                pos[r, col:col + p] = torch.arange(p)
                member[r, col:col + p], group[r, col:col + p] = -1, g
                col += p
            for i in members:
                tail = seqs[i][p:]
                k = len(tail)
                ids[r, col:col + k] = torch.tensor(tail, dtype=torch.long)
                pos[r, col:col + k] = torch.arange(p, p + k)
                types[r, col + max(0, segments[i] - p):col + k] = 1
                member[r, col:col + k], group[r, col:col + k] = i, g
                seq_group[i], first[i] = g, r * w + base
                last[i] = r * w + (col + k - 1 if k else base + p - 1)
                if k:
                    spans[r].append((col, col + k, (*prompt, (col, col + k))))
                col += k
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    return Packed(ids, pos, types, member.reshape(-1), group.reshape(-1),
                  seq_group, first, last, lengths, n, len(groups), int((member > -2).sum()),
                  shape[0] * w, causal, spans)


def pool_packed(hidden: Tensor, batch: Packed, how: str) -> Tensor:
    """``[R, W, H]`` hidden states → ``[N, H]`` per-sequence vectors (mean | cls | last).

    'mean' averages a sequence's prompt tokens (shared, summed once per group) and its own
    response tokens.
    """
    flat = hidden.reshape(-1, hidden.size(-1))
    if how == "cls":
        return flat[batch.first]
    if how == "last":
        return flat[batch.last]
    own = batch.member >= 0
    sums = flat.new_zeros((batch.n, flat.size(-1))).index_add(0, batch.member[own], flat[own])
    prompt = batch.member == -1
    if bool(prompt.any()):
        g_sums = flat.new_zeros((batch.n_groups, flat.size(-1)))
        g_sums = g_sums.index_add(0, batch.group[prompt], flat[prompt])
        sums = sums + g_sums[batch.seq_group]
    return sums / batch.lengths.unsqueeze(-1).to(flat.dtype)
