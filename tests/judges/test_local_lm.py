"""The local-LM judge on the tiny causal model: probabilities, symmetry, batching."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from prefline.judges import make_judge
from prefline.judges.local_lm import LocalLMJudge

ITEMS = [("What is 2+2?", "4.", "It is five, I think"), ("Say hi.", "Hello there!", "hi"),
         ([{"role": "user", "content": "Name a colour."}], "Blue.", "A colour is")]


@pytest.fixture(scope="module")
def judge(tiny_causal_dir: Path) -> LocalLMJudge:
    j = make_judge(f"lm:{tiny_causal_dir}", {"batch_size": 4})
    assert isinstance(j, LocalLMJudge)
    return j


def test_probability_matches_a_direct_forward(judge: LocalLMJudge) -> None:
    text = judge._render(*ITEMS[0])
    ids = judge.tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        lp = torch.log_softmax(judge.model(ids).logits[0, -1].float(), -1)
    la, lb = (torch.logsumexp(lp[i], 0) for i in judge._letters)
    want = float(torch.sigmoid(la - lb))
    assert math.isclose(judge.prob_first_letter([text])[0], want, abs_tol=1e-5)


def test_order_averaged_and_symmetric(judge: LocalLMJudge) -> None:
    fwd = judge.judge_many(ITEMS)
    rev = judge.judge_many([(p, b, a) for p, a, b in ITEMS])
    for v, w in zip(fwd, rev, strict=True):
        assert math.isclose(v.details["p_a"], 1 - w.details["p_a"], abs_tol=1e-5)
        assert v.choice == {"a": "b", "b": "a", "tie": "tie"}[w.choice]
        if v.choice != "tie":
            assert math.isclose(v.confidence, max(v.details["p_a"], 1 - v.details["p_a"]), abs_tol=1e-5)
    # One at a time (no padding) gives the same probabilities as the padded batch.
    single = [judge.judge(*item).details["p_a"] for item in ITEMS]
    assert single == pytest.approx([v.details["p_a"] for v in fwd], abs=1e-4)
    assert len(judge.config()["weights_sha256"]) == 64
