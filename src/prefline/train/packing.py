"""Tokenise preference pairs and pack them into prefix-shared rows.

Each pair becomes one *segment* ``[prompt | chosen | rejected]``. A 4-D attention mask lets
chosen tokens see the prompt and earlier chosen tokens, and rejected tokens see the prompt
and earlier rejected tokens but never the chosen ones; position ids restart after the
prompt, so the rejected branch is computed exactly as if it followed the prompt alone. The
prompt is therefore run once per pair instead of twice. Several segments share a row
(first-fit decreasing, row length = the longest segment in the batch), and segments never
attend across each other, so packing adds no padding where the lengths allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from prefline.base.errors import PreflineError
from prefline.formats.examples import PreferencePair, prompt_text


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of one pair after truncation; ``ref`` = reference (chosen, rejected) log-probs."""

    prompt: tuple[int, ...]
    chosen: tuple[int, ...]
    rejected: tuple[int, ...]
    index: int = 0
    ref: tuple[float, float] = (float("nan"), float("nan"))


@dataclass
class EncodeReport:
    """What encoding did to the data, for the run summary."""

    pairs: int = 0
    truncated_prompts: int = 0
    truncated_responses: int = 0
    skipped_ties: int = 0
    skipped_empty: int = 0
    skipped_identical: int = 0
    notes: list[str] = field(default_factory=list)


def _where(pair: PreferencePair, i: int) -> str:
    line = pair.meta.get("line") if pair.meta else None
    return f"pair {i + 1}" + (f" (line {line})" if line else "")


def _prompt_ids(tokenizer: Any, pair: PreferencePair, i: int) -> list[int]:
    messages = pair.prompt
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    elif len(messages) == 1 and messages[0]["role"] == "user":
        text = prompt_text(messages)  # a plain-text prompt needs no template
    else:
        raise PreflineError(
            f"{_where(pair, i)} has a {len(messages)}-message chat prompt but the tokenizer has "
            "no chat template; use a chat model or give plain-text prompts", field="prompt")
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def _unusable(pair: PreferencePair, report: EncodeReport) -> str | None:
    """Why a pair teaches nothing (and count it), or None when it is usable."""
    if pair.tie:
        report.skipped_ties += 1
        return "a tie carries no preference"
    for name in ("chosen", "rejected"):
        if not getattr(pair, name).strip():
            report.skipped_empty += 1
            return f"the {name} response is empty"
    if pair.chosen == pair.rejected:
        report.skipped_identical += 1
        return "chosen and rejected are identical"
    return None


def _response_ids(tokenizer: Any, text: str) -> list[int]:
    # The end-of-turn token is a trained target: it teaches the policy where to stop.
    ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    return ids + [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else ids


def _truncate(prompt: list[int], chosen: list[int], rejected: list[int], max_length: int,
              report: EncodeReport) -> tuple[list[int], list[int], list[int]]:
    """Fit ``prompt + longer response`` into ``max_length``: cut the prompt from the left,
    keeping at least a quarter of the budget for it; only then cut responses on the right."""
    longest = max(len(chosen), len(rejected))
    if len(prompt) + longest <= max_length:
        return prompt, chosen, rejected
    keep = max(max_length - longest, min(len(prompt), max_length // 4))
    if keep < len(prompt):
        report.truncated_prompts += 1
        prompt = prompt[len(prompt) - keep:]
    room = max_length - len(prompt)
    if longest > room:
        report.truncated_responses += 1
        chosen, rejected = chosen[:room], rejected[:room]
    return prompt, chosen, rejected


def encode_pairs(pairs: Sequence[PreferencePair], tokenizer: Any, max_length: int,
                 ) -> tuple[list[EncodedPair], EncodeReport]:
    """Token ids for every pair; ``max_length`` bounds prompt + the longer response (tokens).

    Ties, empty responses and identical chosen/rejected teach nothing: they are skipped,
    counted and named in ``report.notes``; only a set with no usable pair raises.
    """
    if max_length < 8:
        raise PreflineError("max_length must be at least 8 tokens", field="max_length")
    report = EncodeReport()
    out: list[EncodedPair] = []
    for i, pair in enumerate(pairs):
        problem = _unusable(pair, report)
        if problem:
            if len(report.notes) < 3:  # name the first few so they can be fixed at the source
                report.notes.append(f"skipped {_where(pair, i)}: {problem}")
            continue
        p, c, r = _truncate(_prompt_ids(tokenizer, pair, i), _response_ids(tokenizer, pair.chosen),
                            _response_ids(tokenizer, pair.rejected), max_length, report)
        out.append(EncodedPair(tuple(p), tuple(c), tuple(r), index=len(out)))
    report.pairs = len(out)
    if not out:
        reason = report.notes[0] if report.notes else "no pairs given"
        raise PreflineError(f"no usable preference pairs ({reason})")
    if report.truncated_prompts or report.truncated_responses:
        report.notes.append(
            f"{report.truncated_prompts} prompts truncated from the left and "
            f"{report.truncated_responses} pairs' responses cut to fit max_length={max_length}")
    skipped = report.skipped_ties + report.skipped_empty + report.skipped_identical
    if skipped:
        report.notes.append(
            f"skipped {skipped} pairs: {report.skipped_empty} with an empty response, "
            f"{report.skipped_identical} with identical responses, {report.skipped_ties} ties")
    return out, report


@dataclass
class PackedBatch:
    """Prefix-shared rows for ``n`` pairs. Responses are numbered ``2i`` (chosen of pair i)
    and ``2i+1`` (rejected); ``pred_*`` index the hidden state that predicts ``targets``."""

    input_ids: Tensor       # (rows, T) long
    position_ids: Tensor    # (rows, T) long
    attention_mask: Tensor  # (rows, 1, T, T) bool, True = may attend
    pred_rows: Tensor       # (N,) long
    pred_cols: Tensor       # (N,) long
    targets: Tensor         # (N,) long token ids
    owner: Tensor           # (N,) long response number in [0, 2n)
    lengths: Tensor         # (2n,) float response token counts
    ref: Tensor             # (n, 2) float reference log-probs (NaN when not yet known)
    n: int
    tokens: int             # non-padding tokens in the rows


def _first_fit(sizes: list[int], capacity: int) -> list[list[int]]:
    """Segment indices per row, longest first (first-fit decreasing bin packing)."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(sizes)), key=lambda k: -sizes[k]):
        slot = next((r for r, f in enumerate(free) if f >= sizes[i]), None)
        if slot is None:
            rows.append([i])
            free.append(capacity - sizes[i])
        else:
            rows[slot].append(i)
            free[slot] -= sizes[i]
    return rows


def pack(pairs: Sequence[EncodedPair], row_tokens: int = 0, pad_id: int = 0) -> PackedBatch:
    """Pack ``pairs`` into rows of at most ``max(row_tokens, longest segment)`` tokens."""
    sizes = [len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs]
    layout = _first_fit(sizes, max(row_tokens, max(sizes)))
    width = max(sum(sizes[i] for i in row) for row in layout)
    ids = torch.full((len(layout), width), pad_id, dtype=torch.long)
    pos = torch.zeros_like(ids)
    seg = torch.full_like(ids, -1)      # segment id per token, -1 = padding
    branch = torch.zeros_like(ids)      # 0 prompt, 1 chosen, 2 rejected
    rows_i: list[int] = []
    cols_i: list[int] = []
    tgt: list[int] = []
    own: list[int] = []
    for r, row in enumerate(layout):
        off = 0
        for k in row:
            p = pairs[k]
            plen = len(p.prompt)
            for b, resp in ((1, p.chosen), (2, p.rejected)):
                start = off + plen + (len(p.chosen) if b == 2 else 0)
                ids[r, start:start + len(resp)] = torch.tensor(resp)
                pos[r, start:start + len(resp)] = torch.arange(plen, plen + len(resp))
                branch[r, start:start + len(resp)] = b
                # Token j of the response is predicted by the state before it: the last
                # prompt token for j = 0, else response token j-1 of the same branch.
                prev = [off + plen - 1] + list(range(start, start + len(resp) - 1))
                rows_i += [r] * len(resp)
                cols_i += prev
                tgt += list(resp)
                own += [2 * k + b - 1] * len(resp)
            ids[r, off:off + plen] = torch.tensor(p.prompt)
            pos[r, off:off + plen] = torch.arange(plen)
            seg[r, off:off + sizes[k]] = k
            off += sizes[k]
    same = seg[:, :, None] == seg[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    visible = (branch[:, None, :] == 0) | (branch[:, None, :] == branch[:, :, None])
    # Padding queries attend to themselves only, so no softmax row is empty (NaN-free).
    mask = (same & causal & visible & (seg[:, :, None] >= 0)) | torch.eye(width, dtype=torch.bool)
    lengths = torch.tensor([float(len(x)) for p in pairs for x in (p.chosen, p.rejected)])
    return PackedBatch(
        input_ids=ids, position_ids=pos, attention_mask=mask[:, None], pred_rows=torch.tensor(rows_i),
        pred_cols=torch.tensor(cols_i), targets=torch.tensor(tgt), owner=torch.tensor(own),
        lengths=lengths, ref=torch.tensor([p.ref for p in pairs], dtype=torch.float32),
        n=len(pairs), tokens=sum(sizes))
