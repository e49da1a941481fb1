"""Loopback helpers: uvicorn in a thread, and simulated users with known preferences."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from prefline.collect.loadtest import free_port


@contextmanager
def uvicorn_thread(app: Any) -> Iterator[str]:
    """A real uvicorn server on a loopback port (in this process), stopped afterwards."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@dataclass
class Population:
    """Users who like an arm's answer with a known probability (thumbs up), and ask again
    (regenerate) with another."""

    p_up: dict[str, float]
    p_regen: dict[str, float] = field(default_factory=dict)
    n_users: int = 400
    seed: int = 0
    served: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    acked: list[dict[str, Any]] = field(default_factory=list)
    feedback_ids: list[int] = field(default_factory=list)

    def run(self, base: str, key: str, n_max: int, stop: Callable[[int], bool],
            model: str = "chat") -> int:
        """Up to ``n_max`` chat requests, each followed by feedback; returns how many were
        sent when ``stop(i)`` became true (checked after each request)."""
        rng = random.Random(self.seed)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                          timeout=60) as http:
            for i in range(1, n_max + 1):
                self.one(http, rng, model)
                if stop(i):
                    return i
        return n_max

    def one(self, http: httpx.Client, rng: random.Random, model: str) -> None:
        user = f"user-{rng.randrange(self.n_users)}"
        r = http.post("/v1/chat/completions", json={
            "model": model, "user": user, "max_tokens": 1, "temperature": 0,
            "messages": [{"role": "user", "content": f"question {rng.randrange(5)}"}]})
        body = r.json()
        arm = body.get("arm", "error")
        self.statuses[(arm, r.status_code)] += 1
        if r.status_code != 200:
            return
        self.served[arm] += 1
        self.acked.append(body)
        up = rng.random() < self.p_up[arm]
        events = [{"kind": "binary", "response_id": body["response_id"], "value": up,
                   "user": user}]
        if rng.random() < self.p_regen.get(arm, 0.0):
            events.append({"kind": "implicit", "response_id": body["response_id"],
                           "signal": "regenerate"})
        for ev in events:
            fb = http.post("/api/v1/feedback", json=ev)
            assert fb.status_code == 201, fb.text
            self.feedback_ids.append(int(fb.json()["id"]))
