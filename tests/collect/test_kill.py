"""Reliability: SIGKILL the server mid-load, restart it, and lose or duplicate nothing."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import func, select

from prefline.collect.loadtest import Server, load, prepare
from prefline.store.db import normalise_url, session_scope
from prefline.store.models import Feedback

N = 6_000


def _stored(url: str, key_name: str) -> dict[str, int]:
    """idempotency key -> number of rows holding it, for this run's events."""
    with session_scope(url) as s:
        rows = s.execute(select(Feedback.api_idempotency_key, func.count()).where(
            Feedback.source == f"api:{key_name}", Feedback.api_idempotency_key.like("k-%"))
            .group_by(Feedback.api_idempotency_key)).all()
    return {k: int(n) for k, n in rows}


def test_sigkill_mid_load_loses_and_duplicates_nothing(db_url: str, tmp_path: Path) -> None:
    url = normalise_url(db_url)
    key_name, key, pairs = prepare(url, n_prompts=20)
    server = Server(url).start()
    acked_file = tmp_path / "acked.txt"
    try:
        gen = load(server.port, key, pairs, "k", start=0, n=N, batch=50, concurrency=8,
                   seconds=60, keys_file=str(acked_file), wait=False)
        deadline = time.monotonic() + 60
        while len(_stored(url, key_name)) < 600:  # well into the load, far from its end
            assert time.monotonic() < deadline and gen.poll() is None, "load never started"
            time.sleep(0.05)
        server.kill()
        assert gen.wait(60) == 0
    finally:
        server.kill()
    acked = acked_file.read_text().split()
    after_crash = _stored(url, key_name)
    assert 0 < len(acked) < N, "the kill must land mid-load"
    # every acknowledged event survived the crash, exactly once
    assert set(acked) <= set(after_crash)
    assert set(after_crash.values()) == {1}

    # clients retry everything (acknowledged or not) with the same idempotency keys
    server = Server(url, port=server.port).start()
    try:
        retry = load(server.port, key, pairs, "k", start=0, n=N, batch=500, concurrency=4,
                     seconds=60)
    finally:
        server.stop()
    assert retry["acked"] == N and retry["errors"] == {}
    final = _stored(url, key_name)
    assert len(final) == N and set(final.values()) == {1}
