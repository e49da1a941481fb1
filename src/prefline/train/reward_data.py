"""Reward-training data: where it comes from, which records a reward model can learn from,
and the train / val / test splits.

Sources: a snapshot (its ``train`` split; its ``test`` split is the held-out set) or a file
(any format ``prefline import`` reads). A file has no test split of its own, so one is cut
with the rule a snapshot uses when it is made, :func:`prefline.base.splits.split_of`
(``test_fraction`` of the prompts, seeded by ``train.seed``); ``prefline eval reward --data
FILE --split test`` cuts the same prompts again from the fractions in the model card. The
validation split ``val`` (early stopping, temperature) is carved from train with
:func:`prefline.base.splits.carve`, as in policy training.

What each kind of feedback becomes:

- ``pairwise``: Bradley-Terry on (chosen, rejected); ties go to the tie model (Davidson or
  Rao-Kupper), which pulls the two rewards together instead of being dropped.
- ``ranking``: one listwise Plackett-Luce term per ranking in training. Splitting a ranking
  of n into its n(n-1)/2 pairs would count one annotator judgement as many correlated ones;
  Plackett-Luce is the likelihood of the whole order. Validation compares the implied pairs
  (:func:`prefline.formats.load.ranking_pairs`, the one rankings-to-pairs rule).
- ``rating``: regression of the head on the standardised score (see
  :func:`prefline.train.reward_task.tokenize`).
- ``binary`` (thumbs) and ``implicit`` (labels mapped from implicit signals): ignored, with
  :data:`IGNORED` as the reason; the stage counts and reports them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.base.hashing import file_sha256
from prefline.base.splits import carve, prompt_key_of, split_of
from prefline.formats.examples import (
    PreferencePair,
    RankingExample,
    RatingExample,
    UnpairedExample,
)
from prefline.formats.load import load_examples
from prefline.store.snapshots import get_snapshot, snapshot_examples
from prefline.train.lengths import check_room

USED = (PreferencePair, RankingExample, RatingExample)
"""Example types reward training learns from."""

IGNORED = {
    "binary": "a thumbs label rates one response against no other and on no scale, so a "
              "pairwise reward has nothing to fit without assuming where 'good' starts; "
              "thumbs train KTO (prefline train dpo loss=kto)",
    "implicit": "a label mapped from an implicit signal is a thumbs label (one response, no "
                "comparison, no scale); it trains KTO (prefline train dpo loss=kto)",
}
"""Why each kind that reward training does not use is left out (printed and recorded)."""


def kind_of(example: object) -> str:
    """The feedback kind of an example: pairwise, ranking, rating, binary or implicit."""
    if isinstance(example, PreferencePair):
        return "pairwise"
    if isinstance(example, RankingExample):
        return "ranking"
    if isinstance(example, RatingExample):
        return "rating"
    if isinstance(example, UnpairedExample):
        source = str((getattr(example, "meta", None) or {}).get("source", ""))
        return "implicit" if source.startswith("implicit") else "binary"
    return type(example).__name__


@dataclass(frozen=True)
class FeedbackCounts:
    """How many records of each kind of the training split (train + val) the stage used and
    ignored, and why it ignored them."""

    used: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    """kind → the reason records of that kind were ignored."""

    def lines(self) -> list[str]:
        """One line per kind, for the command's output."""
        out = [f"used {n} {kind} record(s)" for kind, n in sorted(self.used.items())]
        out += [f"ignored {n} {kind} record(s): {self.why[kind]}"
                for kind, n in sorted(self.ignored.items())]
        return out


def count_kinds(examples: Sequence[object]) -> FeedbackCounts:
    used: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    for ex in examples:
        (used if isinstance(ex, USED) else ignored)[kind_of(ex)] += 1
    why = {k: IGNORED.get(k, f"reward training has no loss for {k} records") for k in ignored}
    return FeedbackCounts(dict(used), dict(ignored), why)


@dataclass
class RewardData:
    """The stage's examples by split, where they came from, and what was left out."""

    train: list[Any]
    val: list[Any]
    test: list[Any]
    counts: FeedbackCounts
    source_hash: str
    """The snapshot's content hash, or the file's SHA-256."""
    snapshot_id: int | None = None


def load_reward_data(*, snapshot: str | None, data: str | None, db: str,
                     val_fraction: float, test_fraction: float, seed: int) -> RewardData:
    """Read the source, split it and keep the usable kinds (see the module docstring)."""
    snapshot_id = None
    if snapshot is not None:
        snap = get_snapshot(snapshot, db)
        pool = list(snapshot_examples(snap.id, "train", db))
        test = list(snapshot_examples(snap.id, "test", db))
        source_hash, snapshot_id, where = snap.content_hash, int(snap.id), f"snapshot {snapshot}"
    elif data is not None:
        examples = load_examples(data)
        pool, test = file_splits(examples, test_fraction, seed)
        source_hash, where = file_sha256(Path(data)), data
    else:
        raise PreflineError("give exactly one of snapshot or data", field="snapshot")
    counts = count_kinds(pool)
    usable = [ex for ex in pool if isinstance(ex, USED)]
    if not usable:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.ignored.items())) or "nothing"
        raise PreflineError(f"{where} holds no pairs, rankings or ratings to train a reward "
                            f"model on in its train split (it holds {kinds})",
                            field="snapshot" if snapshot is not None else "data")
    train, val = carve(usable, val_fraction, seed)
    return RewardData(train, val, [ex for ex in test if isinstance(ex, USED)], counts,
                      source_hash, snapshot_id)


def responses_of(example: Any) -> list[str]:
    """The responses a reward model scores for one training example."""
    if isinstance(example, PreferencePair):
        return [example.chosen, example.rejected]
    if isinstance(example, RankingExample):
        return list(example.responses)
    return [example.response]


def check_token_room(builder: Any, examples: Sequence[Any]) -> None:
    """Refuse a max_length that cuts both the prompt and the response of every training
    example, by the rule policy training uses (:func:`prefline.train.lengths.check_room`).
    ``builder`` is the model's ``InputBuilder``; tokenises lazily (usually one example)."""
    reserved = len(builder.prefix) + len(builder.middle) + len(builder.suffix)

    def sizes() -> Iterator[tuple[int, int]]:
        for ex in examples:
            yield (len(builder.prompt_ids(ex.prompt)),
                   max(len(builder.response_ids(r)) for r in responses_of(ex)))

    check_room(sizes(), builder.max_length - reserved, max_length=builder.max_length,
               noun="training examples", reserved=reserved)


def file_splits(examples: Sequence[Any], test_fraction: float,
                seed: int) -> tuple[list[Any], list[Any]]:
    """(train, test) of a file's examples by the snapshot rule (grouped by prompt)."""
    train: list[Any] = []
    test: list[Any] = []
    for ex in examples:
        (test if split_of(prompt_key_of(ex), test_fraction, seed) == "test" else train).append(ex)
    return train, test


def rating_stats(examples: Sequence[Any]) -> dict[str, tuple[float, float]]:
    """Per-criterion (mean, std) of ratings, for standardising regression targets."""
    values: dict[str, list[float]] = {}
    for ex in examples:
        if isinstance(ex, RatingExample):
            for k, v in ex.scores.items():
                values.setdefault(k, []).append(float(v))
    out = {}
    for k, vs in values.items():
        mean = sum(vs) / len(vs)
        var = sum((v - mean) ** 2 for v in vs) / max(1, len(vs) - 1)
        out[k] = (mean, var ** 0.5 if var > 0 else 1.0)
    return out
