"""``prefline bench collect``: the HTTP ingest API under a small load, nothing lost."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from prefline.bench.collect import nothing_lost
from prefline.bench.openloop import percentile, schedule
from prefline.collect.ingest import FeedbackWriter
from prefline.collect.loadtest import prepare
from prefline.collect.schemas import Event
from prefline.store.db import open_store

sys.path.insert(0, str(Path(__file__).parent))
from bench_smoke import check_shape, run_json  # noqa: E402


def test_bench_collect_stores_what_it_acknowledged(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(capsys, ["bench", "collect", "--events", "400", "--batch", "50",
                          "--concurrency", "4", "--seconds", "20", "--rate", "0", "--reps", "1"])
    check_shape(r, ["prefline"])
    run = r["sides"]["prefline"]["runs"][0]
    assert run["backend"] == "sqlite" and "open" not in run
    assert run["batched"]["acked"] == 400 and run["batched"]["events_per_s"] > 0
    assert run["single"]["acked"] == 80 and run["single"]["p99_ms"] > 0
    assert run["acked_stored_mismatch"] == 0 and r["targets"]["acked_stored_mismatch"]["met"]
    assert "open.p99_ms" not in r["targets"]


def test_bench_collect_open_loop_sends_on_schedule_and_loses_nothing(
        capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(capsys, ["bench", "collect", "--no-closed", "--rate", "60",
                          "--open-seconds", "2", "--arrivals", "constant", "--reps", "1"])
    check_shape(r, ["prefline"])
    run = r["sides"]["prefline"]["runs"][0]
    assert "batched" not in run and "single" not in run
    op = run["open"]
    # The schedule is honoured in count: every scheduled request was sent, and answered.
    assert op["scheduled"] == op["sent"] == 120 and op["arrivals"] == "constant"
    assert op["schedule_s"] == pytest.approx(119 / 60)
    assert op["answered"] + sum(op["errors"].values()) == 120
    assert op["p50_ms"] <= op["p90_ms"] <= op["p99_ms"] <= op["max_ms"]
    assert op["achieved_rate"] > 0 and op["send_lag_ms"]["p50"] >= 0
    # Nothing lost: each acknowledged key is stored under the id the server answered.
    assert op["check"] == {"stored": op["acked"], "acked": op["acked"], "lost": 0,
                           "wrong_id": 0, "unacked_stored": 0}
    assert run["acked_stored_mismatch"] == 0
    assert set(r["targets"]) == {"open.p99_ms", "acked_stored_mismatch"}


def test_nothing_lost_notices_a_lost_and_a_misattributed_event(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    name, _, pairs = prepare(url, n_prompts=2)
    writer = FeedbackWriter(open_store(url))
    events = [TypeAdapter(Event).validate_python({"kind": "binary", "response_id": pairs[0][0],
                                                   "value": True, "idempotency_key": f"o-{i}"})
              for i in range(3)]
    ids = [fid for fid, _ in writer.write(events, name, key_id=1)]  # prepare: key id 1
    ok = nothing_lost(url, name, [(f"o-{i}", ids[i]) for i in range(3)])
    assert ok == {"stored": 3, "acked": 3, "lost": 0, "wrong_id": 0, "unacked_stored": 0}
    bad = nothing_lost(url, name, [("o-0", ids[1]), ("o-1", ids[1]), ("o-9", 12345)])
    assert bad == {"stored": 3, "acked": 3, "lost": 1, "wrong_id": 1, "unacked_stored": 1}


def test_open_loop_schedule_count_rate_and_seed() -> None:
    even = schedule(500, 250.0, "constant", seed=0)
    assert len(even) == 500 and even[0] == 0 and even[-1] == pytest.approx(499 / 250)
    poisson = schedule(20_000, 1000.0, "poisson", seed=3)
    assert poisson == schedule(20_000, 1000.0, "poisson", seed=3)  # seeded: reproducible
    assert poisson != schedule(20_000, 1000.0, "poisson", seed=4)
    gaps = [b - a for a, b in zip(poisson, poisson[1:], strict=False)]
    assert all(g >= 0 for g in gaps)
    assert statistics.fmean(gaps) == pytest.approx(1 / 1000, rel=0.05)
    assert statistics.pstdev(gaps) == pytest.approx(1 / 1000, rel=0.05)  # exponential gaps
    with pytest.raises(ValueError, match="constant or poisson"):
        schedule(3, 1.0, "bursty", seed=0)


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.50) == 50 and percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100 and percentile([], 0.5) is None
