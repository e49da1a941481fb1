"""``prefline bench collect``: the HTTP ingest API, uvicorn in one process, the load generator
in another (``prefline.collect.loadtest``).

Each run measures (1) batched ingest in events/s and (2) single-event POST latency at many
concurrent clients, then checks that the store holds exactly the events the server
acknowledged. Both phases are bounded by an event count and a time limit. Each run gets a
fresh SQLite store in its scratch folder unless ``db`` names one (e.g. PostgreSQL); events
are keyed by a fresh API key per run, so runs sharing a store never count each other's.
There is no peer: the figures are checked against the targets below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.bench.harness import Benchmark, side_main

TARGET_EVENTS_PER_S = 5000.0
TARGET_P99_MS = 50.0


@dataclass(frozen=True)
class CollectBenchConfig:
    """How much load, from how many clients, for how long."""

    events: int = 50_000
    """Events posted in batches (phase 1); phase 2 posts events / 5 single events."""
    concurrency: int = 50
    """Concurrent clients posting single events (phase 2)."""
    seconds: float = 60.0
    """Time limit of both phases together; each stops after half of it."""
    batch: int = 500
    """Events per batch request (phase 1)."""
    db: str | None = None
    """Store URL; None = a fresh SQLite file per run."""

    def __post_init__(self) -> None:
        for name in ("events", "concurrency", "batch"):
            if getattr(self, name) < 1:
                raise PreflineError(f"{name} must be at least 1", field=name)
        if self.seconds <= 0:
            raise PreflineError("seconds must be positive", field="seconds")


def run_http(db_url: str, cfg: CollectBenchConfig) -> dict[str, Any]:
    """Both phases against ``prefline serve`` on ``db_url``; events/s, latency in ms, and
    acknowledged vs stored counts."""
    from prefline.collect.loadtest import Server, load, prepare, stored_count
    from prefline.store.db import normalise_url

    url = normalise_url(db_url)
    name, key, pairs = prepare(url)
    server = Server(url).start()
    try:
        half = cfg.seconds / 2
        cpu0 = server.cpu_seconds()
        batched = load(server.port, key, pairs, "b", start=0, n=cfg.events, batch=cfg.batch,
                       concurrency=4, seconds=half)
        cpu1 = server.cpu_seconds()
        single = load(server.port, key, pairs, "s", start=0,
                      n=max(cfg.events // 5, cfg.concurrency), batch=1,
                      concurrency=cfg.concurrency, seconds=half)
        cpu2 = server.cpu_seconds()
        # CPU per event is what the server costs whatever else runs on the machine.
        batched["server_cpu_us_per_event"] = 1e6 * (cpu1 - cpu0) / max(batched["acked"], 1)
        single["server_cpu_us_per_event"] = 1e6 * (cpu2 - cpu1) / max(single["acked"], 1)
    finally:
        server.stop()
    stored_b, stored_s = stored_count(url, name, "b"), stored_count(url, name, "s")
    return {
        "backend": "postgresql" if url.startswith("postgresql") else "sqlite",
        "cpu_count": os.cpu_count(),
        "batched": {"batch_size": cfg.batch, "connections": 4, **batched, "stored": stored_b},
        "single": {"clients": cfg.concurrency, **single, "stored": stored_s},
        # Events acknowledged but not stored, or stored but never acknowledged: must be 0.
        "acked_stored_mismatch": abs(batched["acked"] - stored_b) + abs(single["acked"] - stored_s),
    }


def run_side(impl: str, setting: str, cfg: CollectBenchConfig, inputs: Path,
             scratch: Path) -> dict[str, Any]:
    return run_http(cfg.db or f"sqlite:///{scratch / 'bench.db'}", cfg)


BENCH = Benchmark(name="collect", module="prefline.bench.collect", config=CollectBenchConfig,
                  run_side=run_side, headline="batched.events_per_s",
                  targets={"batched.events_per_s": (">=", TARGET_EVENTS_PER_S),
                           "single.p99_ms": ("<=", TARGET_P99_MS),
                           "acked_stored_mismatch": ("<=", 0)})

if __name__ == "__main__":
    side_main(BENCH)
