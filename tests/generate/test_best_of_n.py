"""Best-of-N: scorers and picks checked by hand; `prefline generate --best-of N` end to end
on the tiny model (every candidate written with its score, the argmax marked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefline.base.errors import PreflineError
from prefline.cli import main
from prefline.generate.backend import Completion, Sampling
from prefline.generate.best_of_n import (
    BestOfNBackend,
    JudgeScorer,
    Picked,
    PythonScorer,
    argmax,
    copeland,
    make_scorer,
    parse_best_of,
    pick,
    read_best_of_n,
)
from prefline.generate.run import GenerateConfig
from prefline.judges.base import Verdict


class Longer:
    """A pairwise judge that prefers the longer response and ties equal lengths."""

    name = "longer"
    both_orders = False

    def config(self) -> dict[str, str]:
        return {"judge": "longer"}

    def judge(self, prompt: object, a: str, b: str) -> Verdict:
        choice = "a" if len(a) > len(b) else "b" if len(b) > len(a) else "tie"
        return Verdict(choice, 1.0, "length")

    def rate(self, prompt: object, response: str) -> dict[str, float]:
        raise PreflineError("pairwise only")


def test_argmax_picks_the_highest_and_the_first_on_ties() -> None:
    assert argmax([0.1, 0.7, 0.3]) == 1
    assert argmax([0.5, 0.9, 0.9]) == 1
    with pytest.raises(PreflineError):
        argmax([])


def test_python_scorer_picks_by_hand(tmp_path: Path) -> None:
    (tmp_path / "r.py").write_text("def vowels(p, r):\n    return sum(c in 'aeiou' for c in r)\n")
    scorer = make_scorer(f"python:{tmp_path / 'r.py'}:vowels")
    picks = pick(scorer, ["p1", "p2"], [["xyz", "banana", "aa"], ["queue", "sky"]])
    # banana: 3 vowels, aa: 2, xyz: 0 -> 1; queue: 4, sky: 0 -> 0
    assert [p.scores for p in picks] == [[0.0, 3.0, 2.0], [4.0, 0.0]]
    assert [p.best for p in picks] == [1, 0] and picks[0].response == "banana"
    assert picks[0].record(scorer.spec)["best_response"] == "banana"


def test_copeland_scores_by_hand() -> None:
    # a (1 char) loses both; bb ties cc and beats a; cc likewise -> 0, 0.75, 0.75
    assert copeland(Longer(), "p", ["a", "bb", "cc"]) == [0.0, 0.75, 0.75]
    scorer = JudgeScorer("longer", Longer(), pointwise=False)
    assert pick(scorer, ["p"], [["a", "bb", "cc"]])[0].best == 1


def test_rules_judge_scores_pointwise() -> None:
    scorer = make_scorer("rules", "judge")
    good = "Here is how: open the settings, then choose Reset. This keeps your files."
    scores = scorer.score("How do I reset my phone?", [good, "no"])
    assert len(scores) == 2 and scores[0] > scores[1]


@pytest.mark.parametrize(("spec", "match"), [("python:nothing", "python:MODULE:FUNC"),
                                              ("nonsense", "unknown scorer"),
                                              ("reward:/no/such/dir", "does not exist")])
def test_bad_scorer_specs(spec: str, match: str) -> None:
    with pytest.raises(PreflineError, match=match):
        make_scorer(spec)


def test_generate_config_needs_one_scorer(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with pytest.raises(PreflineError, match="one scorer"):
        GenerateConfig(prompts="bundled:eval", out=out, best_of=4)
    with pytest.raises(PreflineError, match="give --best-of"):
        GenerateConfig(prompts="bundled:eval", out=out, judge="rules")


def test_generate_best_of_n_cli(tmp_path: Path, tiny_causal_dir: Path, sqlite_url: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.py").write_text("def length(p, r):\n    return float(len(r))\n")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hello.\nName a colour.\n")
    out = tmp_path / "best.jsonl"
    main(["generate", "--policy", str(tiny_causal_dir), "--prompts", str(prompts),
          "--best-of", "4", "--reward", f"python:{tmp_path / 'r.py'}:length", "--out", str(out),
          "--max-new-tokens", "6", "--precision", "fp32", "--db", sqlite_url, "--json"])
    res = json.loads(capsys.readouterr().out)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert res["generation"]["responses"] == 8 and len(rows) == 2
    for row in rows:
        lengths = [float(len(r)) for r in row["responses"]]
        assert len(row["responses"]) == 4 and row["scores"] == lengths
        assert row["best"] == lengths.index(max(lengths))
        assert row["best_response"] == row["responses"][row["best"]]
    assert res["mean_best_score"] >= res["mean_score"]
    assert [r for _, r in read_best_of_n(out) or []] == [r["best_response"] for r in rows]


def test_picked_response() -> None:
    assert Picked(["x", "y"], [0.0, 1.0], 1).response == "y"


class Fixed:
    """A backend that returns the given texts, in order, for every prompt."""

    name, model = "fixed", "fixed"

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.asked: list[int] = []

    def config(self) -> dict[str, str]:
        return {"backend": "fixed"}

    def generate(self, prompts: list[str], sampling: Sampling,
                 on_done: object = None) -> list[list[Completion]]:
        self.asked.append(sampling.n)
        return [[Completion(t) for t in self.texts[:sampling.n]] for _ in prompts]


def test_best_of_n_backend_picks_per_group() -> None:
    inner = Fixed(["a", "ccc", "bb", "dddd", "e", "ff"])
    scorer = PythonScorer("length", lambda p, r: float(len(r)))
    backend = BestOfNBackend(inner, best_of=3, scorer=scorer)
    out = backend.generate(["p"], Sampling(n=2, max_new_tokens=4, temperature=1.0))
    # groups (a, ccc, bb) and (dddd, e, ff): the longest of each
    assert inner.asked == [6] and [c.text for c in out[0]] == ["ccc", "dddd"]
    assert parse_best_of("best-of-4:default") == (4, "default")
    assert parse_best_of("runs/model") is None
    with pytest.raises(PreflineError, match="best-of-N:MODEL"):
        parse_best_of("best-of-x:default")
