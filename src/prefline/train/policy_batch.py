"""Token ids for policy training, and the packed batches their log-probs are computed on.

Two encoded shapes, both "a prompt and two responses":

- :class:`EncodedPair` (DPO family): ``chosen`` and ``rejected``;
- :class:`EncodedSingle` (KTO): the labelled ``completion`` and a fixed *partner*, another
  example's completion, whose log-ratio under this prompt estimates KTO's reference point
  z0 (see :mod:`prefline.train.policy_tasks`).

:func:`pack` lays any of their responses out with prefline's one packer,
:func:`prefline.models.packing.pack`: a prompt is laid out once and each response follows
it with position ids continuing from the prompt, under a causal mask that lets a response
see the prompt and itself only, so every response is computed exactly as if it followed
the prompt alone while the prompt runs once. The batch then says, for every response token,
which hidden state predicts it, so :class:`prefline.train.logprobs.SequenceLogps` can sum
log-probs per response.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from prefline.base.errors import PreflineError
from prefline.base.splits import prompt_key_of
from prefline.formats.examples import PreferencePair, UnpairedExample, prompt_text
from prefline.models.packing import pack as pack_rows
from prefline.train.lengths import check_max_length, check_room

NAN = float("nan")


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of one pair after truncation; ``ref`` = reference (chosen, rejected) log-probs."""

    prompt: tuple[int, ...]
    chosen: tuple[int, ...]
    rejected: tuple[int, ...]
    index: int = 0
    ref: tuple[float, float] = (NAN, NAN)

    @property
    def responses(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self.chosen, self.rejected


@dataclass(frozen=True)
class EncodedSingle:
    """One KTO example: ``completion`` labelled ``desirable`` (or not), counted ``weight``
    times, and a ``partner`` completion from another prompt; ``ref`` = reference
    (completion, partner) log-probs."""

    prompt: tuple[int, ...]
    completion: tuple[int, ...]
    partner: tuple[int, ...]
    desirable: bool
    weight: float = 1.0
    index: int = 0
    ref: tuple[float, float] = (NAN, NAN)

    @property
    def responses(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self.completion, self.partner


Encoded = EncodedPair | EncodedSingle


@dataclass
class EncodeReport:
    """What encoding did to the data, for the run summary."""

    examples: int = 0
    truncated_prompts: int = 0
    truncated_responses: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    """Why an example teaches nothing → how many were skipped for it."""
    notes: list[str] = field(default_factory=list)

    def skip(self, why: str, where: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1
        if sum(self.skipped.values()) <= 3:  # name the first few so they can be fixed
            self.notes.append(f"skipped {where}: {why}")

    def finish(self, what: str, max_length: int, required: bool) -> None:
        if self.truncated_prompts or self.truncated_responses:
            self.notes.append(
                f"{self.truncated_prompts} prompts truncated from the left and "
                f"{self.truncated_responses} {what}' responses cut to fit max_length={max_length}")
        if not self.examples and required:
            why = "; ".join(f"{'all ' if len(self.skipped) == 1 else ''}{n} skipped because "
                            f"{reason}" for reason, n in self.skipped.items())
            first = f"; first: {self.notes[0]}" if self.notes else ""
            raise PreflineError(f"no usable {what} ({why or 'none given'}{first})")


def _where(example: Any, i: int) -> str:
    line = example.meta.get("line") if getattr(example, "meta", None) else None
    noun = "pair" if isinstance(example, PreferencePair) else "example"
    return f"{noun} {i + 1}" + (f" (line {line})" if line else "")


def _prompt_ids(tokenizer: Any, example: Any, i: int) -> list[int]:
    messages = example.prompt
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    elif len(messages) == 1 and messages[0]["role"] == "user":
        text = prompt_text(messages)  # a plain-text prompt needs no template
    else:
        raise PreflineError(
            f"{_where(example, i)} has a {len(messages)}-message chat prompt but the tokenizer "
            "has no chat template; use a chat model or give plain-text prompts", field="prompt")
    return list(tokenizer(text, add_special_tokens=False).input_ids)


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


def _unusable_pair(pair: PreferencePair) -> str | None:
    if pair.tie:
        return "a tie carries no preference"
    for name in ("chosen", "rejected"):
        if not getattr(pair, name).strip():
            return f"the {name} response is empty"
    if pair.chosen == pair.rejected:
        return "chosen and rejected are identical"
    return None


def encode_pairs(pairs: Sequence[PreferencePair], tokenizer: Any, max_length: int,
                 required: bool = True) -> tuple[list[EncodedPair], EncodeReport]:
    """Token ids for every pair; ``max_length`` bounds prompt + the longer response (tokens).

    Ties, empty prompts or responses and identical chosen/rejected teach nothing: they are
    skipped, counted and named in ``report``; a set with no usable pair raises when
    ``required`` (a training split), else comes back empty (a val or held-out split).
    """
    check_max_length(max_length)
    report = EncodeReport()
    out: list[EncodedPair] = []
    sizes: list[tuple[int, int]] = []  # (prompt, longer response) tokens before truncation
    for i, pair in enumerate(pairs):
        problem = _unusable_pair(pair)
        prompt = [] if problem else _prompt_ids(tokenizer, pair, i)
        if not problem and not prompt:
            problem = "the prompt is empty"
        if problem:
            report.skip(problem, _where(pair, i))
            continue
        chosen, rejected = (_response_ids(tokenizer, pair.chosen),
                            _response_ids(tokenizer, pair.rejected))
        sizes.append((len(prompt), max(len(chosen), len(rejected))))
        p, c, r = _truncate(prompt, chosen, rejected, max_length, report)
        out.append(EncodedPair(tuple(p), tuple(c), tuple(r), index=len(out)))
    report.examples = len(out)
    report.finish("preference pairs", max_length, required)
    if required:
        check_room(sizes, max_length, max_length=max_length, noun="preference pairs")
    return out, report


def encode_unpaired(examples: Sequence[UnpairedExample], tokenizer: Any, max_length: int,
                    seed: int = 0, required: bool = True,
                    ) -> tuple[list[EncodedSingle], EncodeReport]:
    """Token ids for KTO examples, each with a fixed partner completion.

    The partner of an example is the completion of the next example, in a seeded shuffle,
    whose prompt differs (the same prompt's only when every example shares one prompt):
    a mismatched (prompt, completion) pair, as in the KTO paper and TRL's KTOTrainer. Fixing
    it here, rather than per batch, lets its reference log-prob be computed once and cached.
    An example's ``meta["weight"]`` (labels mapped from implicit signals) scales its loss.
    Skips and ``required`` as for :func:`encode_pairs`.
    """
    check_max_length(max_length)
    report = EncodeReport()
    kept: list[tuple[UnpairedExample, list[int], list[int]]] = []
    sizes: list[tuple[int, int]] = []  # (prompt, longer response) tokens before truncation
    for i, ex in enumerate(examples):
        prompt = _prompt_ids(tokenizer, ex, i)
        problem = ("the completion is empty" if not ex.completion.strip()
                   else "the prompt is empty" if not prompt else None)
        if problem:
            report.skip(problem, _where(ex, i))
            continue
        completion = _response_ids(tokenizer, ex.completion)
        sizes.append((len(prompt), len(completion)))
        p, c, _ = _truncate(prompt, completion, completion, max_length, report)
        kept.append((ex, p, c))
    partners = _partners([prompt_key_of(ex) for ex, _, _ in kept], seed)
    out = [EncodedSingle(tuple(p), tuple(c), tuple(kept[partners[k]][2][:max_length - len(p)]),
                         desirable=bool(ex.label), weight=float(ex.meta.get("weight", 1.0)),
                         index=k)
           for k, (ex, p, c) in enumerate(kept)]
    report.examples = len(out)
    report.finish("KTO examples", max_length, required)
    if required:
        check_room(sizes, max_length, max_length=max_length, noun="KTO examples")
    return out, report


def _partners(keys: Sequence[str], seed: int) -> list[int]:
    """For each example, the index of the next one in a seeded shuffle with another prompt."""
    order = list(range(len(keys)))
    random.Random(seed).shuffle(order)
    n = len(order)
    out = list(range(n))  # a lone example is its own partner
    for pos, k in enumerate(order):
        # A bounded look-ahead: prompts rarely have more than a few examples each.
        ahead = (order[(pos + step) % n] for step in range(1, min(n, 65)))
        first = order[(pos + 1) % n]
        out[k] = next((j for j in ahead if keys[j] != keys[k]), first)
    return out


@dataclass
class PackedBatch:
    """Packed rows for ``n`` encoded examples; ``r`` responses of each are laid out, numbered
    ``r*i + k`` for the k-th chosen response of example i. ``pred_*`` index the hidden state
    that predicts each of ``targets``."""

    input_ids: Tensor       # (rows, T) long
    position_ids: Tensor    # (rows, T) long
    attention_mask: Tensor  # (rows, 1, T, T) bool, True = may attend
    pred_rows: Tensor       # (N,) long
    pred_cols: Tensor       # (N,) long
    targets: Tensor         # (N,) long token ids
    owner: Tensor           # (N,) long response number in [0, r*n)
    lengths: Tensor         # (r*n,) float response token counts
    ref: Tensor             # (n, 2) float32 reference log-probs (NaN when not yet known)
    n: int
    tokens: int             # non-padding tokens in the rows


def pack(items: Sequence[Encoded], row_tokens: int = 0, pad_id: int = 0,
         which: tuple[int, ...] = (0, 1)) -> PackedBatch:
    """Pack responses ``which`` (0 = chosen/completion, 1 = rejected/partner) of ``items``
    into rows of at most ``max(row_tokens, largest prompt group)`` tokens."""
    seqs = [list(it.prompt) + list(it.responses[k]) for it in items for k in which]
    prompt_len = [len(it.prompt) for it in items for _ in which]
    rows = pack_rows(seqs, pad_id, prompt_len, causal=True, share=True, width=row_tokens)
    width = rows.input_ids.shape[1]
    # Response tokens in layout order; each response's tokens are contiguous.
    flat = (rows.member >= 0).nonzero().squeeze(-1)
    owner = rows.member[flat]
    starts = torch.ones_like(owner, dtype=torch.bool)
    starts[1:] = owner[1:] != owner[:-1]
    # Token j > 0 of a response is predicted by token j-1; token 0 by the last prompt token.
    plen = torch.tensor(prompt_len, dtype=torch.long)
    pred = torch.where(starts, rows.first[owner] + plen[owner] - 1, flat - 1)
    return PackedBatch(
        input_ids=rows.input_ids, position_ids=rows.position_ids,
        attention_mask=rows.attention_mask, pred_rows=pred // width, pred_cols=pred % width,
        targets=rows.input_ids.reshape(-1)[flat], owner=owner,
        lengths=torch.tensor([float(len(s) - p) for s, p in zip(seqs, prompt_len, strict=True)]),
        ref=torch.tensor([it.ref for it in items], dtype=torch.float32), n=len(items),
        tokens=rows.real_tokens)
