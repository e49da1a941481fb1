"""``prefline bench audit``: the synthetic store shows the biases it was built with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_smoke import check_shape, run_json  # noqa: E402


def test_bench_audit_small(capsys: pytest.CaptureFixture[str]) -> None:
    """3000 events: left +0.05 and longer +0.1 in P(win), 1% exact copies of 750 prompts,
    and the snapshot's planted leaks; well within the 30 s budget."""
    r = run_json(capsys, ["bench", "audit", "--n", "3000", "--reps", "1"])
    check_shape(r, ["prefline"])
    m = {k: v["median"] for k, v in r["sides"]["prefline"]["metrics"].items()}
    assert m["counts.feedback"] == 3000 and m["audit_s"] > 0 and m["fill_s"] > 0
    assert 0.5 < m["headline.position_bias"] < 0.6
    assert 0.55 < m["headline.length_bias"] < 0.7
    assert m["headline.duplicates"] >= 7
    assert m["snapshot_leakage"] > 0
    assert r["targets"]["audit_s"]["met"] and r["targets"]["audit_snapshot_s"]["met"]
