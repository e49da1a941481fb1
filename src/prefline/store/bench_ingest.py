"""``prefline bench ingest``: generated pairwise JSONL into fresh SQLite and PostgreSQL stores.

Timing covers the whole import (read, validate, hash, insert, commit), the same call as
``prefline import``. Each backend gets a brand-new store so no run benefits from another.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.store.ingest import import_file

_WORDS = ("model", "answer", "question", "preference", "reward", "policy", "token", "user",
          "explain", "summary", "careful", "helpful", "because", "example", "result", "data")


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


@contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """A new empty database on ``server_url``'s server, dropped afterwards."""
    from sqlalchemy import create_engine, text

    from prefline.store.db import check_reachable, get_engine, normalise_url

    server_url = normalise_url(server_url)
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    check_reachable(admin)
    name = f"prefline_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server_url.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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


def _timed_import(path: Path, url: str) -> dict[str, float]:
    from prefline.store.db import open_store

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


def run_ingest_bench(n: int = 100_000, pg_url: str | None = None,
                     postgres: bool = True) -> dict[str, Any]:
    """Import ``n`` generated records into a fresh SQLite and a fresh PostgreSQL store.

    Returns ``{"n", "sqlite_records_per_s", "postgres_records_per_s", ...}``. Records/s is
    wall-clock; ``*_client_cpu_s`` (this process) and ``postgres_server_cpu_s`` (the
    server processes serving the import) are CPU seconds, and ``*_records_per_cpu_s``
    divides by their sum: a figure a busy shared machine does not inflate.
    """
    out: dict[str, Any] = {"n": n}
    with tempfile.TemporaryDirectory(prefix="prefline-bench-") as tmp:
        data = generate(Path(tmp) / "pairs.jsonl", n)
        for key, value in _timed_import(data, f"sqlite:///{Path(tmp) / 'bench.db'}").items():
            out[f"sqlite_{key}"] = value
        if postgres:
            with fresh_postgres(postgres_url(pg_url)) as url:
                for key, value in _timed_import(data, url).items():
                    out[f"postgres_{key}"] = value
    return out
