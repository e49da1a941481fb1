"""``prefline bench collect``: the HTTP ingest API under a small load, nothing lost."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_smoke import check_shape, run_json  # noqa: E402


def test_bench_collect_stores_what_it_acknowledged(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(capsys, ["bench", "collect", "--events", "400", "--batch", "50",
                          "--concurrency", "4", "--seconds", "20", "--reps", "1"])
    check_shape(r, ["prefline"])
    run = r["sides"]["prefline"]["runs"][0]
    assert run["backend"] == "sqlite"
    assert run["batched"]["acked"] == 400 and run["batched"]["events_per_s"] > 0
    assert run["single"]["acked"] == 80 and run["single"]["p99_ms"] > 0
    assert run["acked_stored_mismatch"] == 0 and r["targets"]["acked_stored_mismatch"]["met"]
