"""Logging overhead and routing throughput of policy serving (issue 13).

``python -m prefline.bench.serving [--db URL] [--requests N] [--concurrency C] [--json]``

1. **Added latency of logging.** The same chat request is served by a scripted in-process
   backend (constant text, so generation costs the same every time) with and without the
   serving path's extra work (flag lookup, arm choice, the prompt/response/served-row
   transaction; the guardrail check runs in a background thread); the report gives p50/p99 of
   the difference per request, in ms. Target: ≤ 5 ms at p99.
2. **Routing throughput.** ``/v1/chat/completions`` of the real app under uvicorn on
   loopback, routed to a local scripted OpenAI-compatible upstream: requests/s at the
   given concurrency, and p50/p99 latency.

Both run on a fresh store with one flag (production + a 50 % canary). Numbers from a busy
machine say so: the JSON carries the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI

from prefline.collect import create_app
from prefline.collect.auth import create_api_key
from prefline.collect.loadtest import free_port
from prefline.registry import record
from prefline.rollout import actions
from prefline.rollout.lifecycle import GATE_ACTION, artifact_hash
from prefline.rollout.serving import ChatRequest, PolicyServer
from prefline.store.db import audit, open_store, session_scope


class Scripted:
    """A backend whose generation costs nothing, so only the serving path is measured."""

    def complete(self, req: ChatRequest) -> str:
        return "a scripted answer of about the usual length for a short chat reply"

    def stream(self, req: ChatRequest) -> Iterator[str]:
        yield self.complete(req)


def prepare(db: str, folder: Path) -> tuple[int, int, str]:
    """Two gated policies (production + 50 % canary on flag ``chat``) and an API key."""
    open_store(db)
    ids = []
    for name in ("prod", "cand"):
        path = folder / name
        path.mkdir()
        (path / "weights.bin").write_bytes(os.urandom(64))
        aid = record(db, "policy", path, config={}, metrics={}, inputs=[], name=name)
        with session_scope(db) as s:  # a passing gate check, recorded as `gate check` would
            audit(s, "bench", GATE_ACTION, f"artifact:{aid}", artifact_hash=artifact_hash(path),
                  passed=True)
        actions.promote(db, aid, actor="bench", reason="bench")
        ids.append(aid)
    actions.promote(db, ids[0], actor="bench", reason="bench", to="production", flag="chat")
    actions.promote(db, ids[1], actor="bench", reason="bench", flag="chat", percent=50)
    with session_scope(db) as s:
        key = create_api_key(s, "bench", rate_per_s=1e9, burst=10**9, actor="bench")
    return ids[0], ids[1], key


def logging_overhead(db: str, n: int) -> dict[str, Any]:
    engine = open_store(db)
    server = PolicyServer(engine, loader=lambda art: Scripted())
    backend = Scripted()
    added = []
    for i in range(n):
        req = ChatRequest("chat", [{"role": "user", "content": f"q {i % 20}"}], f"u{i}")
        t0 = time.perf_counter()
        backend.complete(req)
        t1 = time.perf_counter()
        server.chat(req)
        t2 = time.perf_counter()
        added.append(((t2 - t1) - (t1 - t0)) * 1000)
    return {"requests": n, "added_ms_p50": float(np.percentile(added, 50)),
            "added_ms_p99": float(np.percentile(added, 99)), "target_p99_ms": 5.0,
            "met": bool(np.percentile(added, 99) <= 5.0)}


def _upstream() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def complete(body: dict[str, Any]) -> dict[str, Any]:
        return {"choices": [{"message": {"role": "assistant", "content": "scripted"}}]}

    return app


def _serve(app: Any) -> tuple[str, Any, threading.Thread]:
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", srv, thread


def routing(db: str, ids: tuple[int, int], key: str, n: int, concurrency: int) -> dict[str, Any]:
    up_url, up_srv, up_thread = _serve(_upstream())
    app = create_app(db)
    app.state.collect.extra["upstreams"] = {aid: f"{up_url}/v1" for aid in ids}
    base, srv, thread = _serve(app)
    lat: list[float] = []
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                          timeout=60, limits=httpx.Limits(max_connections=concurrency)) as http:
            def one(i: int) -> None:
                t = time.perf_counter()
                r = http.post("/v1/chat/completions", json={
                    "model": "chat", "user": f"u{i}", "messages": [{"role": "user",
                                                                    "content": f"q {i}"}]})
                r.raise_for_status()
                lat.append((time.perf_counter() - t) * 1000)

            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, range(n)))
            wall = time.perf_counter() - start
    finally:
        srv.should_exit = up_srv.should_exit = True
        thread.join(10)
        up_thread.join(10)
    return {"requests": n, "concurrency": concurrency, "requests_per_s": n / wall,
            "latency_ms_p50": statistics.median(lat), "latency_ms_p99":
            float(np.percentile(lat, 99))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="store URL (default: a fresh SQLite file)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        prod, cand, key = prepare(db, Path(tmp))
        out: dict[str, Any] = {
            "db": db.split("://", 1)[0], "logging": logging_overhead(db, args.requests),
            "routing": routing(db, (prod, cand), key, args.requests, args.concurrency),
            "loadavg": os.getloadavg(), "cores": os.cpu_count()}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        lg, rt = out["logging"], out["routing"]
        print(f"logging adds p50 {lg['added_ms_p50']:.2f} ms, p99 {lg['added_ms_p99']:.2f} ms "
              f"per request (target <= 5 ms: {'met' if lg['met'] else 'NOT met'})")
        print(f"routing to a local upstream: {rt['requests_per_s']:.0f} requests/s at "
              f"concurrency {rt['concurrency']} (p50 {rt['latency_ms_p50']:.1f} ms, p99 "
              f"{rt['latency_ms_p99']:.1f} ms)")
    return out


if __name__ == "__main__":
    main()
