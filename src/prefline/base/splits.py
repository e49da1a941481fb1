"""The one prompt-grouped splitter.

Every prompt lands wholly in one split, decided by a hash of its key, so held-out figures
are never inflated by near-duplicate responses to a training prompt. Two uses, one rule:

- a snapshot's ``train``/``test`` split (:func:`split_of`), fixed when the snapshot is made:
  a model's held-out set is its snapshot's ``test`` split;
- a validation split named ``val``, carved from ``train`` the same way by reward and policy
  training for early stopping and held-out training metrics (:func:`carve`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from prefline.base.hashing import content_hash

T = TypeVar("T")

SPLITS = ("train", "test")
VAL = "val"


def unit(prompt_key: str, seed: int, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by (salt, seed, prompt key)."""
    h = hashlib.sha256(f"{salt}{seed}:{prompt_key}".encode()).hexdigest()
    return int(h[:15], 16) / 16**15


def split_of(prompt_key: str, test_fraction: float, seed: int) -> str:
    """``test`` for a fixed ``test_fraction`` share of prompt keys, else ``train``."""
    return "test" if unit(prompt_key, seed) < test_fraction else "train"


def prompt_key_of(example: Any) -> str:
    """An example's prompt key (``prompt_key`` when set, else the hash of its prompt)."""
    return getattr(example, "prompt_key", "") or content_hash(example.prompt)


def carve(examples: Sequence[T], fraction: float, seed: int,
          key: Callable[[T], str] = prompt_key_of) -> tuple[list[T], list[T]]:
    """(rest, val): a ``fraction`` share of prompts, grouped, moved to the ``val`` split."""
    rest: list[T] = []
    val: list[T] = []
    for ex in examples:
        (val if unit(key(ex), seed, salt="val:") < fraction else rest).append(ex)
    return rest, val
