"""``prefline bench generate``: the optimised decode path against main's original one
(``--against main``), tokens/s per dtype/batch/threads setting, on a tiny policy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_smoke import check_shape, run_json  # noqa: E402


def test_bench_generate_against_main(tiny_causal_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Both sides run in their own subprocess, interleaved; the prefline side samples with
    gen_opt fast, the main peer with none; each setting and the headline ratio reported."""
    r = run_json(capsys, ["bench", "generate", "--policy", str(tiny_causal_dir), "--prompts",
                          "2", "--n", "2", "--max-new-tokens", "3", "--settings",
                          "float32:4:1,bfloat16:2:1", "--reps", "1"])
    check_shape(r, ["prefline", "main"])
    runs = {label: r["sides"][label]["runs"][0] for label in ("prefline", "main")}
    assert runs["prefline"]["gen_opt"] == "fast" and runs["main"]["gen_opt"] == "none"
    for run in runs.values():
        assert {"float32/b4/t1", "bfloat16/b2/t1"} <= set(run)
        for name in ("float32/b4/t1", "bfloat16/b2/t1"):
            assert run[name]["threads"] == 1 and run[name]["new_tokens"] > 0
            assert run[name]["tokens_per_s"] > 0
        assert run["tokens_per_s"] == run["float32/b4/t1"]["tokens_per_s"]
    assert r["comparisons"]["main"]["speedup"] > 0


def test_bench_generate_defaults_are_the_demos_candidate_settings() -> None:
    """The headline figure is measured at what the demo samples with: k, max new tokens,
    temperature, top-p and sequences per call of its CandidateConfig, bf16 weights."""
    from prefline.bench.generation import GenerationBenchConfig, parse_setting
    from prefline.demo.config import CandidateConfig

    bench, demo = GenerationBenchConfig(), CandidateConfig()
    assert (bench.n, bench.max_new_tokens, bench.temperature, bench.top_p) == (
        demo.k, demo.max_new_tokens, demo.temperature, demo.top_p)
    assert parse_setting(bench.settings[0])[:2] == ("bfloat16", demo.batch_size)
    assert bench.prompts * bench.n == demo.batch_size  # one full demo batch
