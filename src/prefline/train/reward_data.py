"""Reward-training data: load from a file or a snapshot, split by prompt, rating statistics."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash, file_sha256
from prefline.formats.examples import PreferencePair, RankingExample, RatingExample


def load_reward_examples(data: str | None, snapshot: str | None,
                         db: str | None = None) -> tuple[list[Any], str]:
    """(examples, content hash of the source). Files go through ``formats.load``; unpaired
    (KTO) records are refused with the file and line by :func:`check_examples`."""
    if data is not None:
        from prefline.formats.load import load_records

        records = load_records(data)
        for rec in records:
            check_examples([rec.example], where=(data, rec.line))
        examples = [r.example for r in records]
        return examples, file_sha256(Path(data))
    return snapshot_data(str(snapshot), "train", db)


def snapshot_data(snapshot: str, split: str, db: str | None) -> tuple[list[Any], str]:
    """A snapshot's examples for ``split`` (train/test/all) and the snapshot's content hash."""
    from prefline.store.snapshots import get_snapshot, snapshot_examples

    examples = list(snapshot_examples(snapshot, split=split, db=db))
    check_examples(examples)
    if not examples:
        raise PreflineError(f"snapshot {snapshot} holds no {split} examples", field="snapshot")
    return examples, get_snapshot(snapshot, db).content_hash


def check_examples(examples: Sequence[Any],
                   where: tuple[str, int | None] | None = None) -> None:
    for ex in examples:
        if not isinstance(ex, PreferencePair | RankingExample | RatingExample):
            path, line = where if where else (None, None)
            raise PreflineError(f"reward training cannot use {type(ex).__name__} records; "
                                "expected pairs, rankings or ratings", path=path, line=line)


def _prompt_key(ex: Any) -> str:
    key = getattr(ex, "prompt_key", "")
    return key or content_hash(ex.prompt)


def split_by_prompt(examples: Sequence[Any], val_fraction: float, test_fraction: float,
                    seed: int = 0) -> tuple[list[Any], list[Any], list[Any]]:
    """(train, val, test) with every prompt in exactly one split, so held-out accuracy is not
    inflated by near-duplicate responses to a training prompt. Deterministic in ``seed``."""
    train, val, test = [], [], []
    for ex in examples:
        digest = hashlib.sha256(f"{seed}:{_prompt_key(ex)}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        if u < test_fraction:
            test.append(ex)
        elif u < test_fraction + val_fraction:
            val.append(ex)
        else:
            train.append(ex)
    return train, val, test


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
