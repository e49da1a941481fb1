"""``prefline bench reward``: prefline and TRL's RewardTrainer on a tiny encoder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_smoke import check_shape, run_json  # noqa: E402


def test_bench_reward_against_trl_fastest(tiny_encoder_dir: Path, pairs_file: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """One epoch over the same prompt-grouped train split on both sides; the real
    RewardTrainer trains and evaluates, so a TRL API change fails here. One TRL setting
    (its default and fastest differ only in TrainingArguments flags, not in TRL's code;
    test_dpo runs both settings of the harness)."""
    r = run_json(capsys, ["bench", "reward", "--model", str(tiny_encoder_dir), "--data",
                          str(pairs_file), "--limit", "24", "--test-fraction", "0.3",
                          "--batch-size", "4", "--max-length", "128", "--reps", "1",
                          "--against", "trl:fastest"])
    check_shape(r, ["prefline", "trl-fastest"])
    facts = r["inputs"]
    assert facts["train_pairs"] + facts["test_pairs"] == 24 and facts["test_pairs"] > 0
    for side in r["sides"].values():
        m = side["metrics"]
        assert m["pairs_per_s"]["median"] > 0 and 0 <= m["accuracy"]["median"] <= 1
        # The same held-out pairs (TRL would drop pairs longer than max_length; none are).
        assert m["n_test"]["median"] == facts["test_pairs"]
    # fastest = TRL's defaults (its own precision choice) without gradient checkpointing
    assert r["sides"]["trl-fastest"]["runs"][0]["settings"]["gradient_checkpointing"] is False
    assert r["comparisons"]["trl-fastest"]["speedup"] > 0


def test_trl_settings_cover_default_fastest_and_fp32() -> None:
    """TRL is compared in its defaults, its fastest setting (bf16 kept) and fp32."""
    from prefline.bench.reward import BENCH, trl_settings

    assert BENCH.peers["trl"] == ("default", "fastest", "fp32")
    assert trl_settings("default") == {}
    assert trl_settings("fastest") == {"gradient_checkpointing": False}
    assert trl_settings("fp32") == {"bf16": False, "gradient_checkpointing": False}
