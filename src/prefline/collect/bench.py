"""HTTP ingest benchmark: uvicorn in one process, the load generator in another.

``run_http_bench`` measures (1) batched ingest in events/s and (2) single-event POST
latency at many concurrent clients, then checks that the store holds exactly the events
the server acknowledged. Both phases are bounded by an event count and a time limit.
Also runnable as ``python -m prefline.collect.bench --db URL [--json]``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from prefline.collect.auth import create_api_key
from prefline.collect.ingest import log_interaction
from prefline.collect.schemas import LogRequest
from prefline.store.db import normalise_url, open_store, session_scope
from prefline.store.models import Feedback

TARGET_EVENTS_PER_S = 5000.0
TARGET_P99_MS = 50.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``prefline serve`` in a subprocess on a loopback port."""

    def __init__(self, db_url: str, port: int | None = None) -> None:
        self.db_url, self.port = db_url, port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prefline", "serve", "--db", self.db_url,
             "--port", str(self.port), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer on port {self.port} in {timeout:.0f}s")

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (Linux /proc)."""
        assert self.proc is not None
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return float("nan")
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing — a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def prepare(db_url: str, n_prompts: int = 50) -> tuple[str, str, list[list[int]]]:
    """A fresh key (rate limit out of the way) and ``n_prompts`` logged response pairs.

    Returns (key name, key, [[response_a, response_b], ...]).
    """
    engine = open_store(db_url)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    with session_scope(engine) as s:
        key = create_api_key(s, name, rate_per_s=1e9, burst=1_000_000, actor="bench")
    pairs = []
    for i in range(n_prompts):
        req = LogRequest.model_validate({"prompt": {"text": f"bench prompt {name} {i}"},
                                         "responses": [{"text": f"reply {i} a", "model": "x"},
                                                       {"text": f"reply {i} b", "model": "y"}]})
        pairs.append(log_interaction(engine, req)[1])
    return name, key, pairs


def load(port: int, key: str, pairs: list[list[int]], prefix: str, *, start: int, n: int,
         batch: int, concurrency: int, seconds: float, keys_file: str | None = None,
         wait: bool = True) -> Any:
    """Run the load generator in its own process; returns its JSON result (or the Popen)."""
    cfg = {"host": "127.0.0.1", "port": port, "key": key, "pairs": pairs, "prefix": prefix,
           "start": start, "n": n, "batch": batch, "concurrency": concurrency,
           "seconds": seconds, "keys_file": keys_file}
    proc = subprocess.Popen([sys.executable, "-m", "prefline.collect.loadgen", json.dumps(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.decode()[-2000:]}")
    return json.loads(out)


def stored_count(db_url: str, key_name: str, prefix: str) -> int:
    with session_scope(db_url) as s:
        return int(s.scalar(select(func.count()).select_from(Feedback).where(
            Feedback.idempotency_key.like(f"{key_name}/{prefix}-%"))) or 0)


def run_http_bench(db_url: str, n_events: int = 50_000, concurrency: int = 50,
                   seconds_limit: float = 60.0, batch: int = 500) -> dict[str, Any]:
    """Benchmark the ingest API over HTTP on ``db_url``.

    Phase 1 posts up to ``n_events`` events in batches of ``batch`` over 4 connections;
    phase 2 posts up to ``n_events // 5`` single events from ``concurrency`` clients. Each
    phase stops after ``seconds_limit / 2`` seconds. Returns events/s, latency
    percentiles in ms, and acknowledged vs stored counts (which must be equal).
    """
    url = normalise_url(db_url)
    name, key, pairs = prepare(url)
    server = Server(url).start()
    try:
        half = seconds_limit / 2
        cpu0 = server.cpu_seconds()
        batched = load(server.port, key, pairs, "b", start=0, n=n_events, batch=batch,
                       concurrency=4, seconds=half)
        cpu1 = server.cpu_seconds()
        single = load(server.port, key, pairs, "s", start=0, n=max(n_events // 5, concurrency),
                      batch=1, concurrency=concurrency, seconds=half)
        cpu2 = server.cpu_seconds()
        # CPU per event is what the server costs whatever else runs on the machine.
        batched["server_cpu_us_per_event"] = 1e6 * (cpu1 - cpu0) / max(batched["acked"], 1)
        single["server_cpu_us_per_event"] = 1e6 * (cpu2 - cpu1) / max(single["acked"], 1)
    finally:
        server.stop()
    stored_b, stored_s = stored_count(url, name, "b"), stored_count(url, name, "s")
    backend = "postgresql" if url.startswith("postgresql") else "sqlite"
    return {
        "backend": backend, "cpu_count": os.cpu_count(),
        "batched": {"batch_size": batch, "connections": 4, **batched, "stored": stored_b},
        "single": {"clients": concurrency, **single, "stored": stored_s},
        "targets": {"batched_events_per_s": TARGET_EVENTS_PER_S, "single_p99_ms": TARGET_P99_MS},
        "meets": {"batched_events_per_s": batched["events_per_s"] >= TARGET_EVENTS_PER_S,
                  "single_p99_ms": (single["p99_ms"] or 1e9) < TARGET_P99_MS,
                  "stored_equals_acked": stored_b == batched["acked"]
                  and stored_s == single["acked"]},
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="HTTP ingest benchmark (prefline bench ingest --http).")
    p.add_argument("--db", default=None, help="store URL (default: a temp SQLite file)")
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    db = args.db
    if db is None:
        import tempfile

        db = f"sqlite:///{tempfile.mkdtemp(prefix='prefline-bench-')}/bench.db"
    result = run_http_bench(db, args.events, args.concurrency, args.seconds)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    b, s = result["batched"], result["single"]
    print(f"{result['backend']}: batched {b['events_per_s']:.0f} events/s "
          f"(target >= {TARGET_EVENTS_PER_S:.0f}); single POST p50 {s['p50_ms']:.1f} ms, "
          f"p99 {s['p99_ms']:.1f} ms at {s['clients']} clients (target < {TARGET_P99_MS:.0f}); "
          f"stored == acknowledged: {result['meets']['stored_equals_acked']}")


if __name__ == "__main__":
    main()
