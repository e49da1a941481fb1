"""The bundled prompt set: size, categories, a stratified deterministic split, no overlap."""

from __future__ import annotations

from collections import Counter

import pytest

from prefline.base.errors import PreflineError
from prefline.data import CATEGORIES, load_prompts


def test_prompt_set_is_large_labelled_and_split_by_category() -> None:
    rows = load_prompts()
    assert len(rows) >= 300
    assert {r["category"] for r in rows} == set(CATEGORIES)
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)
    per_cat = Counter(r["category"] for r in rows)
    eval_cat = Counter(r["category"] for r in rows if r["split"] == "eval")
    for cat, n in per_cat.items():
        # ~25% held out in every category, so each slice is evaluated
        assert abs(eval_cat[cat] / n - 0.25) < 0.05, cat


def test_splits_partition_the_set() -> None:
    train, held = load_prompts("train"), load_prompts("eval")
    assert len(train) + len(held) == len(load_prompts())
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}


def test_unknown_split_is_a_clear_error() -> None:
    with pytest.raises(PreflineError, match="unknown prompt split"):
        load_prompts("test")
