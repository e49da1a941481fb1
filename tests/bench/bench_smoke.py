"""Helpers of the benchmark smoke tests: run a bench command, check the harness's JSON shape."""

from __future__ import annotations

import json

import pytest


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:  # type: ignore[type-arg]
    """``prefline <argv> --json`` in this process; its parsed stdout."""
    from prefline.cli import main

    main([*argv, "--json"])
    return dict(json.loads(capsys.readouterr().out))


def check_shape(result: dict, sides: list[str], reps: int = 1) -> None:  # type: ignore[type-arg]
    """What every benchmark's JSON holds: config, machine facts, interleaved order, and each
    side's runs summarised as median/min/max."""
    assert result["reps"] == reps and sorted(result["sides"]) == sorted(sides)  # JSON sorts keys
    assert result["order"] == sides * reps
    m = result["machine"]
    assert m["cores"] >= 1 and m["torch_threads"] >= 1 and m["cpu_model"]
    assert m["bf16_peak_tflops"] > 0 and m["fp32_peak_tflops"] > 0
    assert len(m["load_avg_start"]) == 3 and isinstance(m["busy"], bool)
    assert 0 <= m["others_cpu_share"] <= 1
    for label in sides:
        side = result["sides"][label]
        assert len(side["runs"]) == reps and side["runs"][0]["peak_rss_mb"] > 0
        for stats in side["metrics"].values():
            assert stats["min"] <= stats["median"] <= stats["max"]
