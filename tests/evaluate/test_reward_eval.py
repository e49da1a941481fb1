"""Reward evaluation: stats against hand values, calibration, probes, RewardBench, report;
the ``eval reward`` stage and command are in test_reward_eval_stage.py."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from prefline.base.errors import PreflineError
from prefline.base.stage import jsonable
from prefline.evaluate.reward_metrics import (
    PROBES,
    evaluate_pairs,
    evaluate_reward,
    load_rewardbench,
    rewardbench,
)
from prefline.evaluate.stats import bootstrap_ci, rank_correlations
from prefline.formats.examples import PreferencePair, RatingExample
from prefline.models.calibration import ece, fit_temperature, pairwise_ece
from prefline.models.reward import RewardModel


def test_bootstrap_ci_brackets_the_mean_and_handles_edges() -> None:
    x = np.array([1.0] * 70 + [0.0] * 30)
    lo, hi = bootstrap_ci(x)
    assert lo < 0.7 < hi and hi - lo < 0.25
    assert bootstrap_ci([1.0]) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_ece_hand_values() -> None:
    # All predictions 0.9 but the event happens half the time: ECE = |0.5 - 0.9| = 0.4.
    assert ece([0.9] * 10, [1] * 5 + [0] * 5) == pytest.approx(0.4)
    # Two bins, each calibrated: 0.25 → 1 of 4 happens, 0.75 → 3 of 4.
    assert ece([0.25] * 4 + [0.75] * 4, [1, 0, 0, 0, 1, 1, 1, 0]) == pytest.approx(0.0)
    assert rank_correlations([1, 2, 3, 4], [2, 4, 6, 8])["spearman"] == pytest.approx(1.0)


def test_temperature_fit_lowers_ece_on_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, 4000)  # true log-odds that the first response wins
    first_wins = rng.random(z.size) < 1 / (1 + np.exp(-z))
    deltas = np.where(first_wins, z, -z) * 3.0  # the model is 3x over-confident
    t = fit_temperature(deltas)
    assert t == pytest.approx(3.0, rel=0.15)
    before, after = pairwise_ece(deltas, 1.0), pairwise_ece(deltas, t)
    assert before > 0.05 and after < before / 3


def _scorer(tiny_encoder_dir: Path) -> RewardModel:
    return RewardModel.create(str(tiny_encoder_dir), max_length=64)


def _pairs() -> list[PreferencePair]:
    return [PreferencePair([{"role": "user", "content": f"q{i}"}], "long helpful reply " * (1 + i % 2),
                           "short", tie=i == 5, tags=("x" if i % 2 else "y",)) for i in range(12)]


def test_evaluate_pairs_counts_ties_apart(tiny_encoder_dir: Path) -> None:
    scorer = _scorer(tiny_encoder_dir)
    res = evaluate_pairs(scorer, _pairs())
    assert res.n_pairs == 11 and res.n_ties == 1 and res.tie_mean_abs_p is not None
    assert 0.0 <= res.accuracy <= 1.0 and res.accuracy_ci[0] <= res.accuracy <= res.accuracy_ci[1]
    assert set(res.per_tag) == {"x", "y"}
    with pytest.raises(PreflineError, match="every pair is a tie"):
        evaluate_pairs(scorer, [_pairs()[5]])


def test_probes_change_text_without_new_content() -> None:
    text = "The capital of France is Paris and it is lovely."
    assert PROBES["filler"](text).startswith(text) and len(PROBES["filler"](text)) > len(text)
    assert "100% certain" in PROBES["confident"](text)
    typo = PROBES["typos"](text)
    assert typo != text and sorted(typo) == sorted(text) and PROBES["typos"](text) == typo


def test_rewardbench_runner_weights_subsets(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    rows = [{"prompt": f"p{i}", "chosen": "a" * (i + 1), "rejected": "b", "subset": s}
            for i, s in enumerate(["chat"] * 3 + ["safety"])]
    path = tmp_path / "rb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = rewardbench(_scorer(tiny_encoder_dir), load_rewardbench(path))
    chat, safety = res["subsets"]["chat"], res["subsets"]["safety"]
    assert (chat["n"], safety["n"]) == (3, 1)
    assert res["overall_weighted"] == pytest.approx((3 * chat["accuracy"] + safety["accuracy"]) / 4)
    assert res["overall_macro"] == pytest.approx((chat["accuracy"] + safety["accuracy"]) / 2)
    path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(PreflineError, match="field 'subset'"):
        load_rewardbench(path)


def test_report_embeds_real_png_plots(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    from prefline.evaluate.reward_report import write_report

    ratings = [RatingExample([{"role": "user", "content": "q"}], "r" * i, {"helpful": float(i)})
               for i in range(1, 5)]
    res, plots = evaluate_reward(_scorer(tiny_encoder_dir), _pairs(), ratings, probes=4)
    assert set(res.ratings["helpful"]) == {"n", "spearman", "kendall"}
    assert set(res.robustness) == set(PROBES)
    out = write_report(jsonable(res), plots, tmp_path / "r.html")
    html = out.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 4
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    assert "Reliability" in html or "Calibration" in html
