"""A small pairs file for the benchmark smoke tests (the tiny models come from tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 distinct prompts, one non-tied pair each, short enough for max_length 64."""
    path = tmp_path_factory.mktemp("bench_data") / "pairs.jsonl"
    with path.open("w") as fh:
        for i in range(40):
            fh.write(json.dumps({"prompt": f"Question {i}: what is {i} plus {i % 7}?",
                                 "chosen": f"It is {i + i % 7}. Happy to help.",
                                 "rejected": "No idea." + " really" * (i % 5)}) + "\n")
    return path



@pytest.fixture(autouse=True)
def _small_peak_matmul(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine-peak matmuls at 256² instead of 2048²: still measured, a second cheaper."""
    from prefline.bench import harness

    monkeypatch.setattr(harness, "PEAK_SIZE", 256)
