"""The reward-model Task for the shared engine: tokenised items, bucketed batches, summed loss.

Examples are tokenised ONCE (prompt shared by its responses, truncated from the left) into
:class:`Item`; ``collate`` flattens a micro-batch's sequences into length buckets, and
``loss`` scores them all in as few padded-token-free passes as possible, then applies the
loss that fits each item: Bradley-Terry for strict pairs, a ties model for ties,
Plackett-Luce for rankings, squared error for ratings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from prefline.base.errors import PreflineError
from prefline.formats.examples import PreferencePair, RankingExample, RatingExample
from prefline.losses.reward import (
    LOSSES,
    bradley_terry,
    plackett_luce,
    rating_mse,
    reward_centering,
)
from prefline.models.buckets import Buckets
from prefline.models.packing import Packed
from prefline.models.personal import drop_groups
from prefline.models.reward import RewardModel
from prefline.train.engine import unwrap

Encoded = tuple[list[int], int]


@dataclass(frozen=True)
class Item:
    """One training example as token ids.

    kind 'pair' (seqs = chosen, rejected), 'tie', 'ranking' (best first) or 'rating'
    (one seq; ``targets`` per head, NaN where the criterion was not rated). ``head`` is the
    criterion head a pair compares on (None: the weighted combination).
    """

    kind: str
    seqs: tuple[Encoded, ...]
    margin: float = 0.0
    head: int | None = None
    targets: tuple[float, ...] = ()
    group: int = 0
    """Group index for a personalised model (0: the shared fallback)."""


@dataclass
class Batch:
    items: list[Item]
    inputs: Packed | Buckets
    offsets: list[int]
    """offsets[i]: index of item i's first sequence in the flattened order."""
    tokens: int
    groups: Tensor | None = None
    """Group index of every sequence (personalised models; some dropped to the fallback)."""


def tokenize(model: RewardModel, examples: Sequence[object],
             rating_stats: dict[str, tuple[float, float]] | None = None) -> list[Item]:
    """Examples → Items. Ratings are standardised per criterion with ``rating_stats``
    (mean, std); unknown criteria or unsupported example types raise PreflineError."""
    names = model.spec.heads.names
    out: list[Item] = []
    for ex in examples:
        item = _item(model, ex, names, rating_stats)
        if model.spec.personal is not None:
            value = model.spec.personal.value_of(getattr(ex, "segment", None),
                                                 getattr(ex, "user", None))
            item = replace(item, group=int(model.spec.personal.index([value])[0]))
        out.append(item)
    return out


def _item(model: RewardModel, ex: object, names: tuple[str, ...],
          rating_stats: dict[str, tuple[float, float]] | None) -> Item:
    if isinstance(ex, PreferencePair):
        crit = ex.meta.get("criterion") if ex.meta else None
        seqs = tuple(model.encode(ex.prompt, [ex.chosen, ex.rejected]))
        margin = float(ex.strength) if ex.strength is not None else 0.0
        return Item("tie" if ex.tie else "pair", seqs, margin, _head_index(names, crit))
    if isinstance(ex, RankingExample):
        return Item("ranking", tuple(model.encode(ex.prompt, list(ex.responses))))
    if isinstance(ex, RatingExample):
        return Item("rating", tuple(model.encode(ex.prompt, [ex.response])),
                    targets=rating_targets(names, ex.scores, rating_stats or {}))
    raise PreflineError(f"reward training cannot use {type(ex).__name__} examples; "
                        "give pairs, rankings or ratings")


def rating_targets(names: tuple[str, ...], scores: dict[str, float],
                   stats: dict[str, tuple[float, float]]) -> tuple[float, ...]:
    """Regression targets per head: each criterion's score standardised by ``stats``
    (mean, std over the training ratings), NaN for a head the record did not rate.

    Several heads: a criterion trains the head of the same name (an unknown criterion is an
    error). One head: its own criterion when rated, else the mean of the record's
    standardised scores, so a single reward learns from ratings of any criterion instead of
    silently getting no target.
    """
    z = {k: (float(v) - stats.get(k, (0.0, 1.0))[0]) / stats.get(k, (0.0, 1.0))[1]
         for k, v in scores.items()}
    if len(names) == 1:
        own = z.get(names[0])
        return (own if own is not None else sum(z.values()) / len(z) if z else math.nan,)
    for crit in z:
        _head_index(names, crit)
    return tuple(z.get(n, math.nan) for n in names)


def _head_index(names: tuple[str, ...], criterion: object) -> int | None:
    if criterion is None or (len(names) == 1 and criterion not in names):
        return None
    if criterion not in names:
        raise PreflineError(f"criterion {criterion!r} has no head; heads are {list(names)}",
                            field="heads")
    return names.index(str(criterion))


@dataclass
class RewardTask:
    """Task protocol for :class:`prefline.train.engine.Trainer`."""

    batcher: Callable[[list[Encoded]], Packed | Buckets]
    """Usually ``RewardModel.make_batch``: packed rows or length buckets."""
    pair_loss: str = "bradley_terry"
    tie_loss: str = "davidson"
    label_smoothing: float = 0.0
    use_margin: bool = False
    center_coef: float | None = None
    personal: bool = False
    """The model is personalised: batches carry each sequence's group index."""
    fallback_drop: float = 0.0
    """Share of items trained as the shared fallback instead of their group."""
    seed: int = 0
    _rng: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = torch.Generator().manual_seed(self.seed)
        if self.pair_loss != "bradley_terry":
            raise PreflineError("pair_loss must be bradley_terry", field="pair_loss")
        if self.tie_loss not in ("davidson", "rao_kupper"):
            raise PreflineError("tie_loss must be davidson or rao_kupper", field="tie_loss")

    def collate(self, items: Sequence[Item]) -> Batch:
        seqs: list[Encoded] = []
        offsets = []
        for it in items:
            offsets.append(len(seqs))
            seqs.extend(it.seqs)
        inputs = self.batcher(seqs)
        groups = None
        if self.personal:
            own = drop_groups(torch.tensor([it.group for it in items], dtype=torch.long),
                              self.fallback_drop, self._rng)
            groups = own.repeat_interleave(torch.tensor([len(it.seqs) for it in items]))
        return Batch(list(items), inputs, offsets, inputs.real_tokens, groups)

    def count(self, batch: Batch) -> int:
        return len(batch.items)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, float, dict[str, float]]:
        # [N, H]; through the (maybe DDP) wrapper for grad sync
        heads = model(batch.inputs, batch.groups) if self.personal else model(batch.inputs)
        combined = unwrap(model).combine(heads)  # type: ignore[operator]
        total = heads.new_zeros(())
        correct = 0.0
        margin_sum = 0.0
        pairs = [(i, it) for i, it in enumerate(batch.items) if it.kind in ("pair", "tie")]
        if pairs:
            c, r = self._pair_scores(heads, combined, batch, pairs)
            strict = torch.tensor([it.kind == "pair" for _, it in pairs], device=c.device)
            loss = self._pair_loss(c, r, strict, [it.margin for _, it in pairs])
            if self.center_coef:
                loss = loss + reward_centering(c, r, self.center_coef)
            total = total + loss.sum()
            correct = float(((c > r) & strict).sum())
            margin_sum = float((c - r).detach()[strict].sum())
        for i, it in enumerate(batch.items):
            s = batch.offsets[i]
            if it.kind == "ranking":
                total = total + plackett_luce(combined[s:s + len(it.seqs)].unsqueeze(0)).sum()
            elif it.kind == "rating":
                t = torch.tensor(it.targets, dtype=heads.dtype, device=heads.device)
                known = ~torch.isnan(t)
                total = total + rating_mse(heads[s][known], t[known]).sum()
        return total, float(len(batch.items)), {
            "accuracy": correct, "margin": margin_sum, "tokens": float(batch.tokens)}

    def _pair_scores(self, heads: Tensor, combined: Tensor, batch: Batch,
                     pairs: list[tuple[int, Item]]) -> tuple[Tensor, Tensor]:
        cols = []
        for i, it in pairs:
            s = batch.offsets[i]
            src = combined if it.head is None else heads[:, it.head]
            cols.append(torch.stack([src[s], src[s + 1]]))
        both = torch.stack(cols)  # [P, 2]
        return both[:, 0], both[:, 1]

    def _pair_loss(self, c: Tensor, r: Tensor, strict: Tensor, margins: list[float]) -> Tensor:
        margin = torch.tensor(margins, dtype=c.dtype, device=c.device) if self.use_margin else None
        bt = bradley_terry(c, r, margin, self.label_smoothing)
        if bool(strict.all()):
            return bt
        tie = LOSSES[self.tie_loss](c, r, ~strict)
        return torch.where(strict, bt, tie)
