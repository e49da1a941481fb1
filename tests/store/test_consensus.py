"""Majority and Bradley-Terry consensus, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from prefline.store.consensus import bradley_terry, bt_outcome, majority


def test_majority_share_and_ties_policy() -> None:
    # votes a, a, tie: a wins 2 of 3; with "half" the tie adds half a win → 2.5/3.
    assert majority("a", "b", ["a", "a", None], "drop").strength == pytest.approx(2 / 3)
    assert majority("a", "b", ["a", "a", None], "half").strength == pytest.approx(2.5 / 3)
    out = majority("a", "b", ["b", "a", "b"], "keep")
    assert (out.winner, out.loser, out.votes) == ("b", "a", 3)
    assert majority("a", "b", ["a", "b", None], "keep").winner is None


def test_bradley_terry_two_players_matches_closed_form() -> None:
    # 3 wins to 1 for x with prior 0: p_x/(p_x+p_y) = 3/4, so log-odds = log 3.
    s = bradley_terry([("x", "y", 1.0)] * 3 + [("x", "y", 0.0)], prior=0.0)
    assert s["x"] - s["y"] == pytest.approx(math.log(3), abs=1e-6)
    out = bt_outcome("x", "y", s, 4)
    assert out.winner == "x" and out.strength == pytest.approx(0.75, abs=1e-6)


def test_bradley_terry_uses_transitive_evidence() -> None:
    # a>b twice, b>c twice, and one c>a: a should still rank above c.
    comps = [("a", "b", 1.0)] * 2 + [("b", "c", 1.0)] * 2 + [("c", "a", 1.0)]
    s = bradley_terry(comps)
    assert s["a"] > s["b"] > s["c"]
    assert sum(s.values()) == pytest.approx(0.0, abs=1e-9)
