"""``prefline bench generate``: tokens/s per dtype/batch/threads setting on a tiny policy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_smoke import check_shape, run_json  # noqa: E402


def test_bench_generate_reports_each_setting(tiny_causal_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(capsys, ["bench", "generate", "--policy", str(tiny_causal_dir), "--prompts",
                          "2", "--n", "2", "--max-new-tokens", "3", "--settings",
                          "float32:4:1,bfloat16:2:1", "--reps", "1"])
    check_shape(r, ["prefline"])
    run = r["sides"]["prefline"]["runs"][0]
    assert {"float32/b4/t1", "bfloat16/b2/t1"} <= set(run)
    for name in ("float32/b4/t1", "bfloat16/b2/t1"):
        assert run[name]["threads"] == 1 and run[name]["new_tokens"] > 0
        assert run[name]["tokens_per_s"] > 0
