"""Over-optimisation monitor: KL against the reference, stop rules, JSONL, the plot."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from prefline.base.errors import PreflineError
from prefline.generate.backend import Sampling
from prefline.generate.best_of_n import PythonScorer
from prefline.models.tiny import tiny_causal_lm
from prefline.train.monitor import Monitor, distinct_n, overoptimisation_plot, response_kl

PROMPTS = ["say a", "say b", "hello there"]


def _share_a(prompt: str, response: str) -> float:
    return response.count("a") / max(1, len(response))


class Gold:
    """A gold judge that scores every response ``level`` (set by the test)."""

    spec = "gold"
    level = 0.0

    def score(self, prompt: object, responses: Sequence[str]) -> list[float]:
        return [self.level] * len(responses)


def _drift(lm: torch.nn.Module, scale: float) -> torch.nn.Module:
    moved = copy.deepcopy(lm)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(scale * torch.randn_like(p))
    return moved


def test_distinct_n_by_hand() -> None:
    # unigrams: a b a | a  -> 2 unique of 4; bigrams: (a b) (b a) -> 2 of 2
    assert distinct_n(["a b a", "a"], 1) == 0.5
    assert distinct_n(["a b a", "a"], 2) == 1.0
    assert distinct_n([""], 2) == 0.0


def test_kl_is_zero_against_itself_and_budget_stops(tmp_path: Path) -> None:
    lm, tok = tiny_causal_lm(seed=0)
    ref = copy.deepcopy(lm)
    log = tmp_path / "monitor.jsonl"
    mon = Monitor(PROMPTS, every=2, proxy=PythonScorer("python:share_a", _share_a),
                  kl_budget=0.5, sampling=Sampling(n=2, max_new_tokens=6, temperature=1.0),
                  path=log)
    assert mon.maybe_measure(1, lm, tok, ref) is None  # not due
    first = mon.maybe_measure(0, lm, tok, ref)
    assert first is not None and abs(first.kl) < 1e-5 and mon.stop_reason is None
    assert first.samples == 6 and 0 <= first.proxy <= 1 and first.length > 0
    moved = _drift(lm, 0.5)
    second = mon.measure(2, moved, tok, ref)
    assert second.kl > 0.5
    assert mon.stop_reason is not None and "budget 0.5" in mon.stop_reason
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 2] and lines[1]["kl"] == pytest.approx(second.kl)
    png = overoptimisation_plot(mon.records, tmp_path / "curve.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_kl_by_hand() -> None:
    """One response of one token: KL = Σ_v p(v) (log p(v) − log q(v)) at the position that
    predicts it, computed here straight from the two models' logits."""
    lm, tok = tiny_causal_lm(seed=0)
    other = _drift(lm, 0.2)
    kl = response_kl(lm, other, tok, ["q"], ["a"])
    text = tok.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False,
                                   add_generation_prompt=True)
    ids = tok(text + "a", add_special_tokens=False).input_ids + [tok.eos_token_id]
    x = torch.tensor([ids])
    with torch.no_grad():
        lp = torch.log_softmax(lm(x).logits.float()[0], -1)
        lq = torch.log_softmax(other(x).logits.float()[0], -1)
    n = len(ids)
    by_hand = sum(float((lp[t].exp() * (lp[t] - lq[t])).sum()) for t in (n - 3, n - 2))
    assert kl.shape == (1,) and float(kl[0]) == pytest.approx(by_hand, rel=1e-5)
    assert float(response_kl(lm, lm, tok, ["q"], ["a"])[0]) == pytest.approx(0.0, abs=1e-6)


def test_falling_gold_stops_after_patience() -> None:
    lm, tok = tiny_causal_lm(seed=0)
    gold = Gold()
    mon = Monitor(PROMPTS, every=1, proxy=PythonScorer("python:share_a", _share_a),
                  gold_judge=gold, gold_patience=2,
                  sampling=Sampling(max_new_tokens=3, temperature=1.0))
    # At step 2 the best before the last two is 0.9 and 0.95 is not below it: go on.
    # At step 3 the best before the last two is 0.95 and 0.8, 0.7 both are: stop.
    for step, level in enumerate([0.9, 0.95, 0.8]):
        gold.level = level
        mon.measure(step, lm, tok, lm)
        assert mon.stop_reason is None
    gold.level = 0.7
    mon.measure(3, lm, tok, lm)
    assert [r.gold for r in mon.records] == pytest.approx([0.9, 0.95, 0.8, 0.7])
    assert mon.stop_reason is not None and "best 0.9500" in mon.stop_reason


def test_bad_settings() -> None:
    scorer = PythonScorer("python:share_a", _share_a)
    with pytest.raises(PreflineError, match="at least one prompt"):
        Monitor([], every=1, proxy=scorer)
    with pytest.raises(PreflineError, match="kl_budget"):
        Monitor(PROMPTS, every=1, proxy=scorer, kl_budget=0)
