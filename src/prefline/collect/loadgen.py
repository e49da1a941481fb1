"""A lean HTTP/1.1 load generator for the ingest API (its own process, bounded in count and time).

It speaks keep-alive HTTP over raw asyncio streams: a general-purpose client costs more
CPU per request than the server under test, which on a 2-core machine would measure the
client. Run as ``python -m prefline.collect.loadgen '<json config>'``; prints JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Conn:
    """One keep-alive connection; ``post`` returns (status, body)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write((f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.head}"
                           f"Content-Type: application/json\r\nContent-Length: {len(body)}"
                           "\r\n\r\n").encode() + body)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            raise ConnectionError("connection closed") from None
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Tally:
    acked_keys: list[str] = field(default_factory=list)
    sent: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def make_event(i: int, prefix: str, pairs: list[list[int]]) -> dict[str, Any]:
    """Event ``i``: a rotating mix of binary, implicit and pairwise feedback."""
    a, b = pairs[i % len(pairs)]
    key = f"{prefix}-{i}"
    kind = i % 3
    if kind == 0:
        return {"kind": "binary", "response_id": a, "value": i % 2 == 0, "idempotency_key": key}
    if kind == 1:
        return {"kind": "implicit", "response_id": b, "signal": "dwell_ms",
                "value": float(i % 5000), "idempotency_key": key}
    return {"kind": "pairwise", "response_a_id": a, "response_b_id": b,
            "choice": "a" if i % 2 else "b", "idempotency_key": key}


async def _worker(conn: Conn, jobs: asyncio.Queue[tuple[str, bytes, list[str]]], tally: Tally,
                  deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            path, body, keys = jobs.get_nowait()
        except asyncio.QueueEmpty:
            return
        tally.sent += len(keys)
        start = time.perf_counter()
        try:
            status, _ = await conn.post(path, body)
        except (OSError, asyncio.IncompleteReadError) as exc:
            tally.error(type(exc).__name__)
            conn.close()
            continue
        tally.latencies_ms.append((time.perf_counter() - start) * 1000)
        if 200 <= status < 300:
            tally.acked_keys.extend(keys)  # acknowledged: the server promised they are stored
        else:
            tally.error(f"http_{status}")


async def run_load(cfg: dict[str, Any]) -> dict[str, Any]:
    """Send events ``start..start+n`` as batches of ``batch`` (1 = single POSTs) over
    ``concurrency`` connections, stopping at ``seconds`` whatever is left."""
    pairs, prefix, batch = cfg["pairs"], cfg["prefix"], int(cfg["batch"])
    start, n = int(cfg.get("start", 0)), int(cfg["n"])
    jobs: asyncio.Queue[tuple[str, bytes, list[str]]] = asyncio.Queue()
    for lo in range(start, start + n, batch):
        events = [make_event(i, prefix, pairs) for i in range(lo, min(lo + batch, start + n))]
        keys = [e["idempotency_key"] for e in events]
        if batch == 1:
            jobs.put_nowait(("/api/v1/feedback", json.dumps(events[0]).encode(), keys))
        else:
            jobs.put_nowait(("/api/v1/feedback/batch",
                             json.dumps({"events": events}).encode(), keys))
    headers = {"Authorization": f"Bearer {cfg['key']}"}
    conns = [Conn(cfg["host"], int(cfg["port"]), headers) for _ in range(int(cfg["concurrency"]))]
    tally = Tally()
    t0, cpu0 = time.perf_counter(), time.process_time()
    deadline = time.monotonic() + float(cfg["seconds"])
    await asyncio.gather(*(_worker(c, jobs, tally, deadline) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    lat = sorted(tally.latencies_ms)
    if cfg.get("keys_file"):
        Path(cfg["keys_file"]).write_text("\n".join(tally.acked_keys))
    return {"sent": tally.sent, "acked": len(tally.acked_keys), "seconds": elapsed,
            "events_per_s": len(tally.acked_keys) / elapsed if elapsed else 0.0,
            "requests": len(lat), "errors": tally.errors,
            "client_cpu_s": time.process_time() - cpu0,
            "p50_ms": _pct(lat, 0.50), "p99_ms": _pct(lat, 0.99), "max_ms": lat[-1] if lat else None}


def _pct(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def main() -> None:
    cfg = json.loads(sys.argv[1])
    try:  # uvloop halves the client's CPU per request when it is installed
        import uvloop

        result = uvloop.run(run_load(cfg))
    except ImportError:
        result = asyncio.run(run_load(cfg))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
