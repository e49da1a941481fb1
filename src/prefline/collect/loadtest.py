"""The collection service under load: ``prefline serve`` in a subprocess, and the load generator
(``prefline.collect.loadgen``) in another.

Used by the crash test (tests/collect/test_kill.py: SIGKILL mid-load, nothing lost or
duplicated) and by the HTTP ingest benchmark (``prefline bench collect``).
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
from prefline.store.db import open_store, session_scope
from prefline.store.models import Feedback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``prefline serve`` in a subprocess on a loopback port."""

    def __init__(self, db_url: str, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.db_url, self.port, self.args = db_url, port or free_port(), args
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The server's command line (a benchmark may start it another way)."""
        return [sys.executable, "-m", "prefline", "serve", "--db", self.db_url,
                "--port", str(self.port), "--log-level", "warning", *self.args]

    def start(self, timeout: float = 60.0) -> Server:
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
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
            Feedback.source == f"api:{key_name}",
            Feedback.api_idempotency_key.like(f"{prefix}-%"))) or 0)
