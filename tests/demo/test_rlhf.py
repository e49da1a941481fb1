"""The demo's RLHF pieces: the annotator's budget and noise, the reward model's best-vs-worst
pairs, and best-of-N's place on the KL axis."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from prefline.demo.rlhf import (
    FixedBackend,
    add_label_noise,
    best_vs_worst_rows,
    bon_kl,
    budget_pairs,
    nested_best,
    pair_generations,
)
from prefline.generate.backend import Sampling
from prefline.generate.store import Generation


def _gens() -> list[Generation]:
    return [Generation([{"role": "user", "content": f"q{g}"}],
                       [f"r{g}-{i}" for i in range(4)], tags=("cat",)) for g in range(10)]


def test_the_budget_is_a_seeded_sample_of_every_distinct_pair() -> None:
    gens = _gens()
    gens[0] = Generation(gens[0].prompt, ["same", "same", "other", "x"])  # a duplicate
    every = budget_pairs(gens, None, seed=0)
    assert len(every) == 3 + 9 * 6 and (0, 0, 1) not in every  # duplicates form no pair
    picked = budget_pairs(gens, 20, seed=3)
    assert len(picked) == 20 == len(set(picked)) and set(picked) <= set(every)
    assert picked == sorted(picked) == budget_pairs(gens, 20, seed=3)
    assert picked != budget_pairs(gens, 20, seed=4)
    assert budget_pairs(gens, 10_000, seed=0) == every
    two = pair_generations(gens, picked[:1])
    g, i, j = picked[0]
    assert two[0].responses == [gens[g].responses[i], gens[g].responses[j]]
    assert two[0].prompt == gens[g].prompt and two[0].tags == gens[g].tags


def test_noise_flips_exactly_its_share_of_decisive_labels_and_no_tie() -> None:
    rows = [{"prompt": "p", "chosen": f"c{k}", "rejected": f"r{k}", "tie": k % 4 == 0}
            for k in range(40)]
    noisy, flipped = add_label_noise(rows, 0.15, seed=0)
    decisive = [k for k in range(40) if k % 4]
    assert len(flipped) == round(0.15 * 30) == 4 and set(flipped) <= set(decisive)
    for k, (old, new) in enumerate(zip(rows, noisy, strict=True)):
        swapped = (new["chosen"], new["rejected"]) == (old["rejected"], old["chosen"])
        assert swapped == (k in flipped), k
    assert rows[flipped[0]]["chosen"] == f"c{flipped[0]}"  # the input is not changed
    assert add_label_noise(rows, 0.15, seed=0)[1] == flipped
    assert add_label_noise(rows, 0.0, seed=0) == (rows, [])


@dataclass
class LengthScorer:
    spec: str = "python:len"

    def score(self, prompt: object, responses: list[str]) -> list[float]:
        return [float(len(r)) for r in responses]


def test_best_vs_worst_pairs_follow_the_scorer() -> None:
    gens = [Generation([{"role": "user", "content": "a"}], ["xx", "x", "xxxx", "xxx"]),
            Generation([{"role": "user", "content": "b"}], ["yy", "zz"]),  # all equal: no pair
            Generation([{"role": "user", "content": "c"}], ["q", "qq", "q"])]
    rows, scores = best_vs_worst_rows(LengthScorer(), gens)
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("xxxx", "x"), ("qq", "q")]
    assert all(r["judge"] == "python:len" and r["tie"] is False for r in rows)
    assert scores == [[2.0, 1.0, 4.0, 3.0], [2.0, 2.0], [1.0, 2.0, 1.0]]


def test_best_of_n_kl_bound_and_nested_pools() -> None:
    assert bon_kl(1) == 0.0
    assert bon_kl(4) == pytest.approx(math.log(4) - 0.75)
    assert [bon_kl(n) < bon_kl(2 * n) for n in (1, 2, 4)] == [True] * 3
    scores, texts = [[0.1, 0.9, 0.5, 2.0]], [["a", "b", "c", "d"]]
    assert [nested_best(scores, texts, n) for n in (1, 2, 4)] == [["a"], ["b"], ["d"]]
    fixed = FixedBackend(["one", "two"], "best-of-2")
    done: list[int] = []
    out = fixed.generate(["p", "q"], Sampling(n=1, max_new_tokens=4), done.append)
    assert [[c.text for c in cs] for cs in out] == [["one"], ["two"]] and done == [2]
