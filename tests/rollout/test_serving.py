"""The OpenAI-compatible chat API on the app: routing, logging, streaming, feedback by
response id, auth, and run-time flag changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.rollout.conftest import Canary, Registry, start_canary
from tests.rollout.simulate import uvicorn_thread

from prefline.collect import create_app
from prefline.collect.auth import create_api_key
from prefline.rollout import actions
from prefline.rollout.flags import bucket, pseudonym
from prefline.store.db import session_scope
from prefline.store.models import Response
from prefline.store.rollout_models import ServedResponse


@pytest.fixture
def canary(sqlite_registry: Registry) -> Canary:
    return start_canary(sqlite_registry, percent=50.0)


@pytest.fixture
def client(canary: Canary) -> Iterator[TestClient]:
    with TestClient(create_app(canary.reg.url)) as c:
        yield c


def _chat(client: TestClient, key: str, user: str, **extra: object) -> dict[str, object]:
    resp = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "chat", "messages": [{"role": "user", "content": "Hi"}],
                             "max_tokens": 4, "user": user, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_chat_is_routed_sticky_logged_and_takes_feedback(client: TestClient,
                                                         canary: Canary) -> None:
    users = [f"user-{i}" for i in range(12)]
    expected = {u: "candidate" if bucket(u, "chat") < 50 else "production" for u in users}
    assert set(expected.values()) == {"candidate", "production"}
    out = {u: _chat(client, canary.key, u, segment="beta") for u in users}
    for u, body in out.items():
        assert body["arm"] == expected[u]
        assert body["object"] == "chat.completion"
        assert body["model"].endswith(f"artifact:{canary.cand if expected[u] == 'candidate' else canary.prod}")
    again = _chat(client, canary.key, users[0])
    assert again["arm"] == expected[users[0]]  # sticky
    rid = out[users[0]]["response_id"]
    with session_scope(canary.reg.url) as s:
        row = s.scalar(select(ServedResponse).where(ServedResponse.response_id == rid))
        assert row is not None and row.user_hash == pseudonym(users[0]) != users[0]
        assert row.segment == "beta" and row.latency_ms > 0 and row.arm == expected[users[0]]
        assert s.get(Response, rid).text == out[users[0]]["choices"][0]["message"]["content"]  # type: ignore[index, union-attr]
    fb = client.post("/api/v1/feedback", headers={"Authorization": f"Bearer {canary.key}"},
                     json={"kind": "binary", "response_id": rid, "value": True, "user": "u"})
    assert fb.status_code == 201, fb.text
    regen = client.post("/api/v1/feedback", headers={"Authorization": f"Bearer {canary.key}"},
                        json={"kind": "implicit", "response_id": rid, "signal": "regenerate"})
    assert regen.status_code == 201, regen.text


def test_stream_sends_sse_chunks_with_the_response_id(client: TestClient,
                                                      canary: Canary) -> None:
    with client.stream("POST", "/v1/chat/completions",
                       headers={"Authorization": f"Bearer {canary.key}"},
                       json={"model": "chat", "stream": True, "max_tokens": 4, "user": "s",
                             "messages": [{"role": "user", "content": "Hello"}]}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in resp.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "response_id" not in chunks[0]  # known only once the reply is logged
    with session_scope(canary.reg.url) as s:
        assert s.get(Response, chunks[-1]["response_id"]).text == text  # type: ignore[union-attr]
        served = s.scalar(select(ServedResponse).where(
            ServedResponse.response_id == chunks[-1]["response_id"]))
        assert served is not None and served.request_id == chunks[0]["id"][len("chatcmpl-"):]


def test_auth_errors_and_runtime_flag_changes(client: TestClient, canary: Canary) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "user": "x"}
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 401 and "API key" in resp.json()["error"]["message"]
    auth = {"Authorization": f"Bearer {canary.key}"}
    resp = client.post("/v1/chat/completions", headers=auth, json={**body, "model": "nope"})
    assert resp.status_code == 404 and "'nope'" in resp.json()["error"]["message"]
    resp = client.post("/v1/chat/completions", headers=auth, json={**body, "messages": []})
    assert resp.status_code == 422 and resp.json()["error"]["param"] == "messages"
    # deny the segment at run time: no restart, the next request goes to production
    cand_user = next(u for u in (f"c{i}" for i in range(100)) if bucket(u, "chat") < 50)
    assert _chat(client, canary.key, cand_user, segment="eu")["arm"] == "candidate"
    actions.set_traffic(canary.reg.url, "chat", actor="test", reason="t", deny=["eu"])
    client.app.state.collect.extra["policy_server"].flags.refresh()  # type: ignore[attr-defined]
    assert _chat(client, canary.key, cand_user, segment="eu")["arm"] == "production"
    assert _chat(client, canary.key, cand_user, segment="us")["arm"] == "candidate"


def test_chat_is_rate_limited_per_key_like_ingest(client: TestClient, canary: Canary) -> None:
    with session_scope(canary.reg.url) as s:
        slow = create_api_key(s, "slow", rate_per_s=0.01, burst=2)
    body = {"model": "chat", "max_tokens": 2, "user": "r",
            "messages": [{"role": "user", "content": "Hi"}]}
    codes = [client.post("/v1/chat/completions", headers={"X-API-Key": slow},
                         json=body).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    resp = client.post("/v1/chat/completions", headers={"X-API-Key": slow}, json=body)
    assert resp.status_code == 429 and int(resp.headers["retry-after"]) >= 1


def streaming_upstream() -> FastAPI:
    """An OpenAI-compatible upstream that streams three pieces, or fails for 'boom'."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def complete(body: dict[str, Any]) -> Any:
        if body["messages"][-1]["content"] == "boom":
            raise HTTPException(500, "upstream down")
        chunks = [{"choices": [{"delta": {"content": p}}]} for p in ("Hel", "lo", " world")]
        return StreamingResponse(iter([f"data: {json.dumps(c)}\n\n" for c in chunks]
                                      + ["data: [DONE]\n\n"]), media_type="text/event-stream")

    return app


def test_upstream_stream_passes_through_and_failures_are_logged(canary: Canary) -> None:
    with uvicorn_thread(streaming_upstream()) as upstream:
        app = create_app(canary.reg.url)
        app.state.collect.extra["upstreams"] = {canary.prod: f"{upstream}/v1",
                                                canary.cand: f"{upstream}/v1"}
        auth = {"Authorization": f"Bearer {canary.key}"}
        body = {"model": "chat", "stream": True, "user": "s",
                "messages": [{"role": "user", "content": "Hi"}]}
        with TestClient(app) as client:
            with client.stream("POST", "/v1/chat/completions", headers=auth,
                               json=body) as resp:
                chunks = [json.loads(ln[6:]) for ln in resp.iter_lines()
                          if ln.startswith("data: {")]
            pieces = [c["choices"][0]["delta"].get("content") for c in chunks]
            assert pieces[1:4] == ["Hel", "lo", " world"]
            with client.stream("POST", "/v1/chat/completions", headers=auth, json={
                    **body, "messages": [{"role": "user", "content": "boom"}]}) as resp:
                last = [json.loads(ln[6:]) for ln in resp.iter_lines()
                        if ln.startswith("data: {")][-1]
            assert last["choices"][0]["finish_reason"] == "error"
            resp = client.post("/v1/chat/completions", headers=auth, json={
                **body, "stream": False, "messages": [{"role": "user", "content": "boom"}]})
            assert resp.status_code == 502 and "500" in resp.json()["error"]["message"]
    with session_scope(canary.reg.url) as s:
        rows = s.scalars(select(ServedResponse).order_by(ServedResponse.id)).all()
        assert s.get(Response, rows[0].response_id).text == "Hello world"  # type: ignore[union-attr]
        assert [r.error is not None for r in rows] == [False, True, True]
