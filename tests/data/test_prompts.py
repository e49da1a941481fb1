"""The bundled prompt set: size, categories, a stratified deterministic split, no overlap."""

from __future__ import annotations

from collections import Counter

import pytest

from prefline.base.errors import PreflineError
from prefline.data import CATEGORIES, load_manifest, load_prompts, split_manifest, split_rule


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
    parts = {s: {r["prompt"] for r in load_prompts(s)} for s in ("train", "dev", "eval")}
    assert sum(map(len, parts.values())) == len(load_prompts())
    assert not parts["train"] & parts["dev"] and not parts["train"] & parts["eval"]
    assert not parts["dev"] & parts["eval"]
    assert (len(parts["train"]), len(parts["dev"]), len(parts["eval"])) == (210, 42, 84)


def test_the_split_is_the_recorded_rule_and_stable() -> None:
    rows = load_prompts()
    assert {r["id"]: r["split"] for r in rows} == split_rule(rows)
    assert split_rule(list(reversed(rows))) == split_rule(rows)  # file order never matters
    # the manifest's hashes pin every split: a moved or edited prompt changes one of them
    assert load_manifest() == split_manifest(rows)
    first_dev = next(r["id"] for r in rows if r["split"] == "dev")
    edited = split_manifest([{**r, "prompt": r["prompt"] + "!"} if r["id"] == first_dev else r
                             for r in rows])["splits"]
    assert edited["dev"] != load_manifest()["splits"]["dev"]
    assert edited["eval"] == load_manifest()["splits"]["eval"]


def test_unknown_split_is_a_clear_error() -> None:
    with pytest.raises(PreflineError, match="unknown prompt split"):
        load_prompts("test")
