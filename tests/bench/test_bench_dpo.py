"""``prefline bench dpo``: prefline and TRL's DPOTrainer (default and fastest) on a tiny model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_smoke import check_shape, run_json  # noqa: E402


def test_bench_dpo_against_trl_runs_every_side(tiny_causal_dir: Path, pairs_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """One warm-up + one timed step of 2 pairs per side; TRL's real DPOTrainer runs in its
    defaults and in its fastest setting, so a TRL API change fails here."""
    r = run_json(capsys, ["bench", "dpo", "--model", str(tiny_causal_dir), "--data",
                          str(pairs_file), "--steps", "1", "--pairs-per-step", "2",
                          "--max-length", "64", "--reps", "1"])
    check_shape(r, ["prefline", "trl", "trl-fastest"])
    assert r["inputs"]["pairs"] == 2 and r["headline"] == "pairs_per_s"
    for side in r["sides"].values():
        assert side["metrics"]["pairs_per_s"]["median"] > 0
        assert side["metrics"]["step_s"]["median"] > 0
    assert r["sides"]["prefline"]["metrics"]["mfu"]["median"] > 0
    default, fastest = (r["sides"][s]["runs"][0]["settings"] for s in ("trl", "trl-fastest"))
    assert default == {"bf16": True, "precompute_ref_log_probs": False,
                       "gradient_checkpointing": True}  # TRL's own defaults
    assert fastest == {"bf16": True, "precompute_ref_log_probs": True,
                       "gradient_checkpointing": False}
    assert set(r["comparisons"]) == {"trl", "trl-fastest"}
    assert all(c["speedup"] > 0 and c["rss_ratio"] > 0 for c in r["comparisons"].values())
