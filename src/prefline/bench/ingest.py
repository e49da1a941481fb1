"""``prefline bench ingest``: generated pairwise JSONL into fresh SQLite and PostgreSQL stores.

Timing covers the whole import (read, validate, hash, insert, commit), the same call as
``prefline import``; migrations are set-up and stay outside it. Every run imports the same
generated file (written once by the parent) into brand-new stores, so no run benefits from
another. There is no peer: the figures are records/s against the targets below.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.bench.harness import Benchmark, side_main

_WORDS = ("model", "answer", "question", "preference", "reward", "policy", "token", "user",
          "explain", "summary", "careful", "helpful", "because", "example", "result", "data")


@dataclass(frozen=True)
class IngestBenchConfig:
    """How many records, into which backends."""

    n: int = 100_000
    """Generated pairwise records (two per prompt, 20-60 words per response)."""
    postgres: bool = True
    """Also import into a fresh PostgreSQL database (SQLite always runs)."""
    pg_url: str | None = None
    """PostgreSQL server URL; default $PREFLINE_TEST_PG, else scripts/pg-start.sh."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise PreflineError(f"n must be positive, got {self.n}", field="n")


def generate(path: Path, n: int, seed: int = 0) -> Path:
    """Write ``n`` pairwise records (two per prompt, ~20-60 word texts) to ``path``."""
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(k))

    with open(path, "w", encoding="utf-8") as fh:
        prompt = ""
        for i in range(n):
            if i % 2 == 0:
                prompt = f"Prompt {i // 2}: {text(20)}"
            fh.write(json.dumps({"prompt": prompt, "chosen": f"{i} {text(rng.randint(20, 60))}",
                                 "rejected": f"{i} {text(rng.randint(20, 60))}"}) + "\n")
    return path


def postgres_url(explicit: str | None = None) -> str:
    """``explicit``, else ``$PREFLINE_TEST_PG``, else start the throw-away server with
    ``scripts/pg-start.sh`` (present in a source checkout)."""
    url = explicit or os.environ.get("PREFLINE_TEST_PG")
    if url:
        return url
    script = Path(__file__).resolve().parents[3] / "scripts" / "pg-start.sh"
    if not script.exists():
        raise PreflineError("no PostgreSQL URL: pass --pg-url or set PREFLINE_TEST_PG", field="pg_url")
    done = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PreflineError(f"could not start PostgreSQL with {script}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip().splitlines()[-1]


def _backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds used so far by each server process attached to ``url``'s database
    (PostgreSQL on this machine only; empty when /proc cannot tell)."""
    from sqlalchemy import text

    from prefline.store.db import get_engine

    if not url.startswith("postgresql"):
        return {}
    with get_engine(url).connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars().all()
    out: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return out


def timed_import(path: Path, url: str) -> dict[str, float]:
    """Import ``path`` into the fresh store ``url``: records/s (wall) and CPU seconds.

    ``client_cpu_s`` is this process, ``server_cpu_s`` the PostgreSQL processes serving the
    import; ``records_per_cpu_s`` divides by their sum, a figure a busy machine does not
    inflate.
    """
    from prefline.store.db import open_store
    from prefline.store.ingest import import_file

    open_store(url)  # migrations are set-up, not ingest: keep them out of the timing
    server_before = _backend_cpu(url)
    cpu = time.process_time()
    summary = import_file(path, url, actor="bench")
    cpu = time.process_time() - cpu
    if summary.feedback_added != summary.records:
        raise RuntimeError(f"benchmark store was not fresh: {summary}")
    out = {"records_per_s": round(summary.records_per_s, 1), "seconds": round(summary.seconds, 3),
           "client_cpu_s": round(cpu, 3)}
    server = _backend_cpu(url)
    if server:
        out["server_cpu_s"] = round(sum(v - server_before.get(p, 0.0) for p, v in server.items()), 3)
    cpu_total = out["client_cpu_s"] + out.get("server_cpu_s", 0.0)
    out["records_per_cpu_s"] = round(summary.records / cpu_total, 1) if cpu_total else 0.0
    return out


def prepare(cfg: IngestBenchConfig, inputs: Path) -> dict[str, Any]:
    generate(inputs / "pairs.jsonl", cfg.n)
    if cfg.postgres:
        postgres_url(cfg.pg_url)  # fail (or start the server) before any run
    return {"records": cfg.n}


def run_side(impl: str, setting: str, cfg: IngestBenchConfig, inputs: Path,
             scratch: Path) -> dict[str, Any]:
    from prefline.store.testing import fresh_postgres

    data = inputs / "pairs.jsonl"
    out: dict[str, Any] = {"sqlite": timed_import(data, f"sqlite:///{scratch / 'bench.db'}")}
    if cfg.postgres:
        with fresh_postgres(postgres_url(cfg.pg_url)) as url:
            out["postgres"] = timed_import(data, url)
    return out


BENCH = Benchmark(name="ingest", module="prefline.bench.ingest", config=IngestBenchConfig,
                  run_side=run_side, prepare=prepare, headline="sqlite.records_per_s",
                  targets={"sqlite.records_per_s": (">=", 25_000),
                           "postgres.records_per_s": (">=", 10_000)})

if __name__ == "__main__":
    side_main(BENCH)
