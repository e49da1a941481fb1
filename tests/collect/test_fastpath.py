"""``collect.fastpath``: POST /api/v1/feedback served without FastAPI's machinery answers
exactly as the FastAPI route does, on a real uvicorn server.

The fast path takes ``Content-Type: application/json`` only; the same request with
``application/json; charset=utf-8`` goes through the FastAPI route, which is the reference.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from prefline.collect import fastpath
from prefline.collect.auth import KeyCache, KeyInfo
from prefline.store.db import open_store
from prefline.store.models import Feedback

FAST = "application/json"
ROUTE = "application/json; charset=utf-8"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the requests the fast path wrote (the server runs in this process)."""
    calls: list[int] = []
    store_one = fastpath.store_one

    async def counting(*args: Any) -> Any:
        calls.append(1)
        return await store_one(*args)

    monkeypatch.setattr(fastpath, "store_one", counting)
    return calls


def _post(base: str, body: Any, content_type: str, key: str | None,
          header: str = "authorization") -> httpx.Response:
    headers = {"content-type": content_type}
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "authorization" else key
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{base}/api/v1/feedback", content=content, headers=headers, timeout=30)


def _same(fast: httpx.Response, route: httpx.Response) -> None:
    """Same status, body and headers (but the date)."""
    assert (fast.status_code, fast.content) == (route.status_code, route.content), (
        fast.text, route.text)
    drop = {"date"}
    assert ({k: v for k, v in fast.headers.items() if k not in drop}
            == {k: v for k, v in route.headers.items() if k not in drop})


def test_fast_path_answers_as_the_route_does(server: str, sqlite_store: Any,
                                             served: list[int]) -> None:
    key = sqlite_store.key
    a, b = sqlite_store.responses[0]

    def binary(idem: str, value: bool = True) -> dict[str, Any]:
        return {"kind": "binary", "response_id": a, "value": value, "idempotency_key": idem}

    created_fast = _post(server, binary("k-fast"), FAST, key)
    created_route = _post(server, binary("k-route"), ROUTE, key)
    for resp in (created_fast, created_route):
        assert resp.status_code == 201 and resp.json()["status"] == "created"
    assert created_fast.headers["content-type"] == created_route.headers["content-type"]
    # Retries across the two paths: the same row, 200 duplicate.
    again_fast = _post(server, binary("k-route"), FAST, key)
    again_route = _post(server, binary("k-fast"), ROUTE, key)
    assert again_fast.json() == {"id": created_route.json()["id"], "status": "duplicate"}
    assert again_route.json() == {"id": created_fast.json()["id"], "status": "duplicate"}
    assert again_fast.status_code == again_route.status_code == 200
    assert served == [1, 1]

    cases: list[tuple[Any, str | None, str]] = [
        (binary("k-fast", value=False), key, "authorization"),  # 409: another body
        ({"kind": "binary", "response_id": 10**9, "value": True}, key, "authorization"),  # 422
        ({"kind": "pairwise", "response_a_id": a, "response_b_id": a, "choice": "a"}, key,
         "authorization"),
        ({"kind": "nope", "response_id": a}, key, "authorization"),
        ({"kind": "binary", "response_id": a}, key, "authorization"),  # value missing
        ({"kind": "binary", "response_id": a, "value": True, "extra": 1}, key, "authorization"),
        ({"kind": "binary", "response_id": a, "value": True, "user": "x\ud800"}, key,
         "authorization"),
        ({"kind": "binary", "response_id": a, "value": True, "idempotency_key": "k" * 91}, key,
         "authorization"),
        ([1, 2], key, "authorization"),
        (b"null", key, "authorization"),
        (b"{not json", key, "authorization"),
        (b"", key, "authorization"),
        (b'{"kind": "binary", "response_id": 1, "value": NaN}', key, "authorization"),
        (b"\xff\xfe{", key, "authorization"),
        (binary("k-none"), None, "authorization"),  # 401
        (binary("k-bad"), "pk_nothere_123", "authorization"),
        ({"kind": "binary", "response_id": 10**9, "value": True}, None, "authorization"),
        (binary("k-header"), key, "x-api-key"),  # created by the first, duplicate after
    ]
    for body, given, header in cases:
        before = len(served)
        fast = _post(server, body, FAST, given, header)
        route = _post(server, body, ROUTE, given, header)
        if body == binary("k-header"):
            assert (fast.status_code, route.status_code) == (201, 200)
            assert route.json() == {"id": fast.json()["id"], "status": "duplicate"}
        else:
            _same(fast, route)
            assert fast.status_code >= 400
        wrote = fast.status_code in (201, 409) or (fast.status_code == 422 and "exist" in fast.text)
        assert len(served) - before == wrote, (body, fast.text)


def _chunks(data: bytes) -> Iterator[bytes]:
    yield data[:7]
    yield data[7:]


def test_fast_path_acknowledges_only_what_is_stored(server: str, sqlite_store: Any,
                                                    served: list[int]) -> None:
    """Concurrent requests (some with a chunked body) share group commits; every answer
    names the row stored under its key, once, and a retry gets the same row."""
    key = sqlite_store.key
    pairs = sqlite_store.responses

    def send(i: int) -> tuple[str, int, int]:
        a, b = pairs[i % len(pairs)]
        idem = f"conc-{i}"
        event = ({"kind": "pairwise", "response_a_id": a, "response_b_id": b, "choice": "b",
                  "idempotency_key": idem} if i % 2 else
                 {"kind": "implicit", "response_id": a, "signal": "copy",
                  "idempotency_key": idem})
        data = json.dumps(event).encode()
        resp = httpx.post(f"{server}/api/v1/feedback", headers={
            "content-type": FAST, "authorization": f"Bearer {key}"},
            content=_chunks(data) if i % 3 == 0 else data, timeout=30)
        return idem, resp.status_code, resp.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(send, range(48)))
        again = list(pool.map(send, range(48)))
    assert {status for _, status, _ in first} == {201}
    assert {status for _, status, _ in again} == {200}
    assert [fid for _, _, fid in again] == [fid for _, _, fid in first]
    assert len(served) == 96
    with open_store(sqlite_store.url).connect() as conn:
        stored = conn.execute(select(Feedback.api_idempotency_key, Feedback.id)
                              .where(Feedback.api_idempotency_key.like("conc-%"))).all()
    assert sorted(stored) == sorted((idem, fid) for idem, _, fid in first)


def test_concurrent_requests_share_one_key_lookup(sqlite_store: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests that arrive while a key is looked up wait for that lookup (one per key),
    a waiter that goes away does not cancel it, and an expired key is looked up again."""
    cache = KeyCache(open_store(sqlite_store.url))
    loads: list[str] = []
    load = cache._load

    def slow_load(prefix: str, digest: str) -> KeyInfo | None:
        loads.append(prefix)
        time.sleep(0.2)  # the lookup is still running when the others arrive
        return load(prefix, digest)

    monkeypatch.setattr(cache, "_load", slow_load)
    key, bad = sqlite_store.key, "pk_nothere_123"

    async def together() -> list[KeyInfo | None]:
        return list(await asyncio.gather(*(cache.shared_lookup(key) for _ in range(20)),
                                         *(cache.shared_lookup(bad) for _ in range(5))))

    got = asyncio.run(together())
    assert len(loads) == 2
    assert {info.name for info in got[:20] if isinstance(info, KeyInfo)} == {"prod"}
    assert all(isinstance(info, KeyInfo) for info in got[:20]) and got[20:] == [None] * 5

    cache.ttl = 0.0  # every answer is stale at once: looked up again

    async def one_leaves() -> KeyInfo | None:
        first = asyncio.ensure_future(cache.shared_lookup(key))
        second = asyncio.ensure_future(cache.shared_lookup(key))
        await asyncio.sleep(0.05)
        first.cancel()
        return await second

    assert isinstance(asyncio.run(one_leaves()), KeyInfo)
    assert len(loads) == 3
