"""``prefline bench collect``: the HTTP ingest API, uvicorn in one process, the load generator
in another (``prefline.collect.loadtest``, ``prefline.bench.openloop``).

Each run measures, each phase optional: (1) batched ingest in events/s; (2) single-event
POST latency at many concurrent closed-loop clients; (3) single-event POSTs **open loop**:
sent on a fixed schedule (constant or seeded Poisson arrivals at ``rate`` per second)
whatever the answers, latency measured from each request's scheduled send time. Afterwards
it checks that the store holds every event the server acknowledged (counts for 1-2; for 3
also each acknowledged idempotency key with the feedback id the server answered). Each run
gets a fresh SQLite store in its scratch folder unless ``db`` names one (e.g. PostgreSQL);
events are keyed by a fresh API key per run, so runs sharing a store never count each
other's. There is no peer: the figures are checked against the targets below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
    """Time limit of phases 1 and 2 together; each stops after half of it."""
    batch: int = 500
    """Events per batch request (phase 1)."""
    closed: bool = True
    """Run phases 1 and 2 (batched, closed-loop single POSTs); off: the open loop only."""
    rate: float = 1000.0
    """Open-loop single POSTs per second (phase 3); 0 skips phase 3."""
    open_seconds: float = 10.0
    """Length of the open-loop schedule (rate x open_seconds requests)."""
    arrivals: Literal["constant", "poisson"] = "poisson"
    """Open-loop send times: evenly spaced, or Poisson arrivals (seeded by ``seed``)."""
    seed: int = 0
    """Seed of the Poisson arrival times."""
    workers: int = 1
    """uvicorn worker processes of the server (1: ``prefline serve`` itself)."""
    profile: bool = False
    """Run the server under cProfile (CPU-time clock) and report its top functions by
    cumulative CPU in ``server_profile`` (slows the server: for finding costs, not figures)."""
    db: str | None = None
    """Store URL; None = a fresh SQLite file per run."""

    def __post_init__(self) -> None:
        for name in ("events", "concurrency", "batch", "workers"):
            if getattr(self, name) < 1:
                raise PreflineError(f"{name} must be at least 1", field=name)
        for name in ("seconds", "open_seconds"):
            if getattr(self, name) <= 0:
                raise PreflineError(f"{name} must be positive", field=name)
        if self.rate < 0:
            raise PreflineError("rate must be 0 (no open loop) or positive", field="rate")
        if not self.closed and self.rate == 0:
            raise PreflineError("nothing to run: closed is off and rate is 0", field="rate")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU used so far by process ``pid`` and its live children (uvicorn's
    workers), from Linux /proc."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


# ``prefline serve ...`` under a CPU-time profiler that writes its stats when the server stops.
_PROFILED = ("import cProfile, sys, time\n"
             "out, sys.argv = sys.argv[1], ['prefline', *sys.argv[2:]]\n"
             "from prefline.cli import main\n"
             "prof = cProfile.Profile(time.process_time)\n"
             "try:\n    prof.runcall(main)\nfinally:\n    prof.dump_stats(out)\n")


def _server(url: str, workers: int, profile_to: Path | None = None) -> Any:
    """``prefline serve`` on ``url`` (under cProfile when ``profile_to``); with several
    workers, uvicorn's own multi-process server on the same app factory (the store URL
    travels as PREFLINE_DB)."""
    from prefline.collect.loadtest import Server

    class Custom(Server):
        def command(self) -> list[str]:
            if profile_to is not None:
                return [sys.executable, "-c", _PROFILED, str(profile_to),
                        *super().command()[3:]]
            return ["env", f"PREFLINE_DB={url}", sys.executable, "-m", "uvicorn", "--factory",
                    "prefline.collect:create_app", "--port", str(self.port), "--workers",
                    str(workers), "--log-level", "warning", "--no-access-log"]

    if workers > 1 and profile_to is not None:
        raise PreflineError("profile needs workers = 1", field="profile")
    return (Server(url) if workers == 1 and profile_to is None else Custom(url)).start()


REQUEST_PATH = r"prefline/collect|fastapi|starlette|uvicorn/protocols|pydantic|sqlalchemy|sqlite3"
"""Functions on a request's path: the server's start-up (imports, CLI) is left out."""


def top_rows(stats_file: Path, n: int = 15) -> list[str]:
    """The ``n`` top rows by cumulative time of a cProfile stats file, as printed, among
    the functions of a request's path (:data:`REQUEST_PATH`)."""
    import io
    import pstats

    text = io.StringIO()
    pstats.Stats(str(stats_file), stream=text).sort_stats("cumulative").print_stats(
        REQUEST_PATH, n)
    return [line for line in text.getvalue().splitlines() if line.strip()]


def open_loop(port: int, key: str, pairs: list[list[int]], cfg: CollectBenchConfig,
              acked_file: Path, prefix: str = "o") -> dict[str, Any]:
    """Phase 3 in its own process (``prefline.bench.openloop``); its JSON result."""
    spec = {"host": "127.0.0.1", "port": port, "key": key, "pairs": pairs, "prefix": prefix,
            "rate": cfg.rate, "seconds": cfg.open_seconds, "arrivals": cfg.arrivals,
            "seed": cfg.seed, "acked_file": str(acked_file)}
    done = subprocess.run([sys.executable, "-m", "prefline.bench.openloop", json.dumps(spec)],
                          capture_output=True, text=True, timeout=cfg.open_seconds + 180)
    if done.returncode != 0:
        raise RuntimeError(f"open-loop generator failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout))


def nothing_lost(url: str, key_name: str, acked: list[tuple[str, int]],
                 prefix: str = "o") -> dict[str, int]:
    """Every acknowledged (idempotency key, feedback id) in the store? Counts of stored rows,
    acknowledged ones missing (``lost``), stored under another id (``wrong_id``), and stored
    but never acknowledged (``unacked_stored``: committed, answer lost; a client retries)."""
    from sqlalchemy import select

    from prefline.store.db import session_scope
    from prefline.store.models import Feedback

    with session_scope(url) as s:
        stored = dict(s.execute(select(Feedback.api_idempotency_key, Feedback.id).where(
            Feedback.source == f"api:{key_name}",
            Feedback.api_idempotency_key.like(f"{prefix}-%"))).tuples().all())
    acked_ids = dict(acked)
    return {"stored": len(stored), "acked": len(acked_ids),
            "lost": sum(1 for k in acked_ids if k not in stored),
            "wrong_id": sum(1 for k, i in acked_ids.items() if k in stored and stored[k] != i),
            "unacked_stored": sum(1 for k in stored if k not in acked_ids)}


def _closed(server: Any, key: str, pairs: list[list[int]], cfg: CollectBenchConfig
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Phases 1 and 2 (``prefline.collect.loadgen``), with the server's CPU per event."""
    from prefline.collect.loadtest import load

    half = cfg.seconds / 2
    cpu0 = tree_cpu_seconds(server.proc.pid)
    batched = load(server.port, key, pairs, "b", start=0, n=cfg.events, batch=cfg.batch,
                   concurrency=4, seconds=half)
    cpu1 = tree_cpu_seconds(server.proc.pid)
    single = load(server.port, key, pairs, "s", start=0,
                  n=max(cfg.events // 5, cfg.concurrency), batch=1,
                  concurrency=cfg.concurrency, seconds=half)
    cpu2 = tree_cpu_seconds(server.proc.pid)
    # CPU per event is what the server costs whatever else runs on the machine.
    batched["server_cpu_us_per_event"] = 1e6 * (cpu1 - cpu0) / max(batched["acked"], 1)
    single["server_cpu_us_per_event"] = 1e6 * (cpu2 - cpu1) / max(single["acked"], 1)
    return batched, single


def run_http(db_url: str, cfg: CollectBenchConfig, scratch: Path | None = None) -> dict[str, Any]:
    """The phases ``cfg`` asks for against the server on ``db_url``; events/s, latency in
    ms, and acknowledged vs stored."""
    import tempfile

    from prefline.collect.loadtest import prepare, stored_count
    from prefline.store.db import normalise_url

    url = normalise_url(db_url)
    name, key, pairs = prepare(url)
    out: dict[str, Any] = {"backend": "postgresql" if url.startswith("postgresql") else "sqlite",
                           "cpu_count": os.cpu_count(), "workers": cfg.workers}
    folder = Path(scratch or tempfile.mkdtemp())
    acked_file, profile_to = folder / "open-acked.json", folder / "server.prof"
    server = _server(url, cfg.workers, profile_to if cfg.profile else None)
    try:
        if cfg.closed:
            out["batched"], out["single"] = _closed(server, key, pairs, cfg)
        if cfg.rate > 0:
            cpu0 = tree_cpu_seconds(server.proc.pid)
            out["open"] = open_loop(server.port, key, pairs, cfg, acked_file)
            served = out["open"]["acked"] + out["open"]["warmup_requests"]
            out["open"]["server_cpu_us_per_event"] = (  # warm-up requests included
                1e6 * (tree_cpu_seconds(server.proc.pid) - cpu0) / max(served, 1))
    finally:
        server.stop()
    if cfg.profile:
        out["server_profile"] = top_rows(profile_to, 25)
    mismatch = 0
    if cfg.closed:
        out["batched"].update(batch_size=cfg.batch, connections=4,
                              stored=stored_count(url, name, "b"))
        out["single"].update(clients=cfg.concurrency, stored=stored_count(url, name, "s"))
        mismatch += sum(abs(out[p]["acked"] - out[p]["stored"]) for p in ("batched", "single"))
    if cfg.rate > 0:
        check = nothing_lost(url, name, [(str(k), int(i)) for k, i in json.loads(acked_file.read_text())])
        out["open"]["check"] = check
        mismatch += check["lost"] + check["wrong_id"]
    # Events acknowledged but not stored (or stored under another id; closed phases: also
    # stored but never acknowledged): must be 0.
    out["acked_stored_mismatch"] = mismatch
    return out


def run_side(impl: str, setting: str, cfg: CollectBenchConfig, inputs: Path,
             scratch: Path) -> dict[str, Any]:
    return run_http(cfg.db or f"sqlite:///{scratch / 'bench.db'}", cfg, scratch)


BENCH = Benchmark(name="collect", module="prefline.bench.collect", config=CollectBenchConfig,
                  run_side=run_side, headline="batched.events_per_s",
                  targets={"batched.events_per_s": (">=", TARGET_EVENTS_PER_S),
                           "single.p99_ms": ("<=", TARGET_P99_MS),
                           "open.p99_ms": ("<=", TARGET_P99_MS),
                           "acked_stored_mismatch": ("<=", 0)})

if __name__ == "__main__":
    side_main(BENCH)
