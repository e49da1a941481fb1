"""pairs=best_vs_worst: one pair per prompt, the clearest one, worked out by hand."""

from __future__ import annotations

import pytest

from prefline.base.config import build
from prefline.base.errors import PreflineError
from prefline.formats.examples import PreferencePair
from prefline.train.policy_config import DPOConfig
from prefline.train.policy_data import best_vs_worst


def pair(prompt: str, chosen: str, rejected: str, tie: bool = False) -> PreferencePair:
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, tie=tie)


def test_best_vs_worst_keeps_the_pair_with_the_largest_win_gap() -> None:
    # Prompt p, candidates a b c d judged pairwise: wins a=3, b=1.5, c=1.5, d=0 (b~c tie).
    pairs = [pair("p", "a", "b"), pair("p", "a", "c"), pair("p", "a", "d"),
             pair("p", "b", "c", tie=True), pair("p", "b", "d"), pair("p", "c", "d"),
             pair("q", "x", "y"), pair("r", "u", "v", tie=True)]
    out = best_vs_worst(pairs)
    # a vs d has the gap 3 - 0; q has its only pair; r has no decisive pair at all.
    assert [(p.prompt, p.chosen, p.rejected) for p in out] == [("p", "a", "d"), ("q", "x", "y")]


def test_pairs_setting_is_validated() -> None:
    assert build(DPOConfig, {"pairs": "best_vs_worst"}).pairs == "best_vs_worst"
    with pytest.raises(PreflineError, match="field 'pairs'"):
        build(DPOConfig, {"pairs": "best"})
    with pytest.raises(PreflineError, match="kto trains on single responses"):
        build(DPOConfig, {"pairs": "best_vs_worst", "loss": "kto"})
