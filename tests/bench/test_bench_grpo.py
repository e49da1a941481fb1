"""``prefline bench grpo``: prefline and TRL's GRPOTrainer on a tiny model (a smoke test)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_smoke import check_shape, run_json  # noqa: E402


def test_bench_grpo_against_trl_runs_both_sides(tiny_causal_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """One warm-up + one timed step of 2 prompts × 2 completions of 4 tokens per side; TRL's
    real GRPOTrainer runs, so a TRL API change fails here."""
    r = run_json(capsys, ["bench", "grpo", "--model", str(tiny_causal_dir), "--steps", "1",
                          "--prompts-per-step", "2", "--k", "2", "--max-new-tokens", "4",
                          "--reps", "1", "--threads", "1"])
    check_shape(r, ["prefline", "trl"])
    assert r["inputs"]["samples_per_step"] == 4 and r["headline"] == "samples_per_s"
    for side in r["sides"].values():
        assert side["metrics"]["samples_per_s"]["median"] > 0
        assert side["metrics"]["step_s"]["median"] > 0
        assert 0 < side["metrics"]["completion_tokens"]["median"] <= 4
    assert r["sides"]["trl"]["runs"][0]["settings"]["loss_type"] == "grpo"
    assert r["comparisons"]["trl"]["speedup"] > 0 and r["comparisons"]["trl"]["rss_ratio"] > 0
