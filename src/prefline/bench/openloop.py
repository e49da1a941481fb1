"""An open-loop load generator for the single-event ingest API (its own process).

Requests go out on a fixed schedule, request ``i`` at ``t0 + s_i`` (constant rate, or Poisson
arrivals from a seeded generator), whether or not earlier requests were answered: a slow
server does not slow the generator down, so its queue shows in the latency instead of being
hidden (no coordinated omission). Latency is measured from each request's *scheduled* send
time to the end of its response. Each request takes an idle keep-alive connection or opens
a new one, so as many requests are in flight as the server lets pile up.

Run as ``python -m prefline.bench.openloop '<json config>'``; prints JSON: the schedule
honoured (scheduled / sent / answered counts), latency percentiles, the rate achieved,
errors, how late the generator itself sent (``send_lag_ms``: when that grows, the generator
is starved of CPU, not the server slow), and the acknowledged events (idempotency key and
feedback id) in ``acked_file`` for the nothing-lost check.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefline.collect.loadgen import Conn, make_event

KEEP_ALIVE_S = 4.0
"""Reuse a keep-alive connection only if it was last used this recently (uvicorn closes
idle connections after 5 s)."""


def schedule(n: int, rate: float, arrivals: str, seed: int) -> list[float]:
    """Send offsets in seconds of ``n`` requests at ``rate`` per second: evenly spaced
    (``constant``) or with exponential gaps (``poisson``, seeded)."""
    if arrivals == "constant":
        return [i / rate for i in range(n)]
    if arrivals != "poisson":
        raise ValueError(f"arrivals must be constant or poisson, got {arrivals!r}")
    rng, t, out = random.Random(seed), 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


def percentile(sorted_ms: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of an ascending list; None when empty."""
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, max(0, int(round(q * len(sorted_ms))) - 1))]


@dataclass
class Run:
    host: str
    port: int
    headers: dict[str, str]
    timeout: float
    idle: list[Conn] = field(default_factory=list)
    used: dict[int, float] = field(default_factory=dict)  # id(connection) -> last answer
    opened: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)
    acked: list[tuple[str, int]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    last_end: float = 0.0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def connection(self) -> Conn:
        """An idle keep-alive connection, else a new one. Connections idle for longer than
        the server keeps them (uvicorn: 5 s) are closed rather than reused: the server may
        have closed its end, and the request would fail without having been sent."""
        now = time.perf_counter()
        while self.idle:
            conn = self.idle.pop()
            if now - self.used.get(id(conn), now) < KEEP_ALIVE_S:
                return conn
            conn.close()
        self.opened += 1
        return Conn(self.host, self.port, self.headers)

    async def one(self, due: float, body: bytes, key: str) -> None:
        """Send one request at ``due`` (perf_counter time); record its latency from ``due``."""
        self.lags_ms.append((time.perf_counter() - due) * 1000)
        conn = self.connection()
        self.sent += 1
        try:
            status, payload = await asyncio.wait_for(conn.post("/api/v1/feedback", body),
                                                     self.timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            self.error("timeout" if isinstance(exc, TimeoutError) else type(exc).__name__)
            conn.close()  # a connection with an unread response cannot be reused
            return
        end = time.perf_counter()
        self.idle.append(conn)
        self.used[id(conn)] = end
        self.latencies_ms.append((end - due) * 1000)
        self.last_end = max(self.last_end, end)
        if status in (200, 201):  # acknowledged: the server promised the event is stored
            self.acked.append((key, int(json.loads(payload)["id"])))
        else:
            self.error(f"http_{status}")


async def warm_up(run: Run, connections: int, requests: int, prefix: str,
                  pairs: list[list[int]]) -> None:
    """Open ``connections`` keep-alive connections and send ``requests`` events over them
    (keys ``<prefix>-i``, not measured): a client of a running service has its connections
    open already, and the server's first requests pay one-off costs."""
    conns = [Conn(run.host, run.port, run.headers) for _ in range(connections)]

    async def closed(conn: Conn, ids: range) -> None:
        for i in ids:
            await conn.post("/api/v1/feedback", json.dumps(make_event(i, prefix, pairs)).encode())

    await asyncio.gather(*(closed(c, range(j, max(requests, connections), connections))
                           for j, c in enumerate(conns)))
    run.idle.extend(conns)
    run.used.update((id(c), time.perf_counter()) for c in conns)
    run.opened = connections


async def run_open(cfg: dict[str, Any]) -> dict[str, Any]:
    """Send ``rate * seconds`` single-event POSTs on schedule, then wait for the stragglers."""
    rate, seconds = float(cfg["rate"]), float(cfg["seconds"])
    n = max(1, int(rate * seconds))
    offsets = schedule(n, rate, cfg.get("arrivals", "constant"), int(cfg.get("seed", 0)))
    pairs, prefix = cfg["pairs"], cfg["prefix"]
    # Bodies are built before the clock starts: the generator's CPU goes to sending.
    bodies = [json.dumps(make_event(i, prefix, pairs)).encode() for i in range(n)]
    run = Run(cfg["host"], int(cfg["port"]), {"Authorization": f"Bearer {cfg['key']}"},
              float(cfg.get("timeout", 30.0)))
    await warm_up(run, int(cfg.get("connections", 32)), int(cfg.get("warmup", 200)),
                  f"{prefix}w", pairs)
    tasks = []
    cpu0, t0 = time.process_time(), time.perf_counter() + 0.05
    for i, offset in enumerate(offsets):
        due = t0 + offset
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(run.one(due, bodies[i], f"{prefix}-{i}")))
    await asyncio.gather(*tasks)
    for conn in run.idle:
        conn.close()
    lat, lags = sorted(run.latencies_ms), sorted(run.lags_ms)
    span = max(run.last_end - t0, 1e-9)
    if cfg.get("acked_file"):
        Path(cfg["acked_file"]).write_text(json.dumps(run.acked))
    return {
        "arrivals": cfg.get("arrivals", "constant"), "offered_rate": rate,
        "scheduled": n, "sent": run.sent, "answered": len(lat), "acked": len(run.acked),
        "errors": run.errors, "connections": run.opened,
        "schedule_s": offsets[-1], "seconds": span,
        "achieved_rate": len(run.acked) / span,
        "p50_ms": percentile(lat, 0.50), "p90_ms": percentile(lat, 0.90),
        "p99_ms": percentile(lat, 0.99), "max_ms": lat[-1] if lat else None,
        "send_lag_ms": {"p50": percentile(lags, 0.50), "p99": percentile(lags, 0.99),
                        "max": lags[-1] if lags else None},
        "client_cpu_s": time.process_time() - cpu0,
        "warmup_requests": max(int(cfg.get("warmup", 200)), int(cfg.get("connections", 32))),
    }


def main() -> None:
    try:  # uvloop halves the generator's CPU per request when it is installed
        from uvloop import run
    except ImportError:
        from asyncio import run  # type: ignore[assignment]
    sys.stdout.write(json.dumps(run(run_open(json.loads(sys.argv[1])))) + "\n")


if __name__ == "__main__":
    main()
