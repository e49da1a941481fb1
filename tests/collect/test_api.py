"""The ingest API on real SQLite and PostgreSQL stores."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from prefline.store.db import session_scope
from prefline.store.models import Annotator, Feedback, Prompt, Response


def _auth(store: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {store.key}"}


def test_log_deduplicates_prompts_and_responses(client: TestClient, store: Any) -> None:
    body = {"prompt": {"messages": [{"role": "user", "content": "2+2?"}], "tags": ["math"]},
            "responses": [{"text": "4", "model": "m1"}, {"text": "5", "model": "m2"}]}
    first = client.post("/api/v1/log", json=body, headers=_auth(store))
    again = client.post("/api/v1/log", json=body, headers=_auth(store))
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    with session_scope(store.url) as s:
        prompt = s.get(Prompt, first.json()["prompt_id"])
        assert prompt is not None and prompt.tags == ["math"]
        assert prompt.messages == [{"role": "user", "content": "2+2?"}]
        texts = [s.get(Response, i).text for i in first.json()["response_ids"]]  # type: ignore[union-attr]
    assert texts == ["4", "5"]


def test_every_feedback_kind_is_stored(client: TestClient, store: Any) -> None:
    a, b = store.responses[1]
    events = [
        {"kind": "pairwise", "response_a_id": a, "response_b_id": b, "choice": "b",
         "strength": 0.5, "shown_left_id": b, "idempotency_key": "p1", "rationale": "why"},
        {"kind": "rating", "response_id": a, "scores": {"helpful": 4}, "idempotency_key": "r1"},
        {"kind": "binary", "response_id": a, "value": False, "user": "u42"},
        {"kind": "implicit", "response_id": b, "signal": "dwell_ms", "value": 1500},
        {"kind": "ranking", "response_ids": [b, a]},
    ]
    ids = []
    for ev in events:
        resp = client.post("/api/v1/feedback", json=ev, headers=_auth(store))
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    with session_scope(store.url) as s:
        rows = {f.kind: f for f in s.scalars(select(Feedback).where(Feedback.id.in_(ids)))}
        assert rows["pairwise"].choice == "b" and rows["pairwise"].shown_left_id == b
        assert rows["pairwise"].payload == {"choice": "b", "strength": 0.5}
        assert rows["rating"].payload == {"scores": {"helpful": 4.0}}
        assert rows["binary"].payload == {"value": False}
        assert rows["implicit"].payload == {"signal": "dwell_ms", "value": 1500.0}
        assert rows["ranking"].payload == {"order": [b, a]}
        assert {f.prompt_id for f in rows.values()} == {s.get(Response, a).prompt_id}  # type: ignore[union-attr]
        kinds = {s.get(Annotator, f.annotator_id).name: s.get(Annotator, f.annotator_id).kind  # type: ignore[union-attr]
                 for f in rows.values()}
    assert kinds == {"api:prod": "human", "api:prod:u42": "human",
                     "api:prod:implicit": "implicit"}


def test_idempotency_key_never_duplicates(client: TestClient, store: Any) -> None:
    a, _ = store.responses[0]
    ev = {"kind": "binary", "response_id": a, "value": True, "idempotency_key": "retry-me"}
    first = client.post("/api/v1/feedback", json=ev, headers=_auth(store))
    second = client.post("/api/v1/feedback", json=ev, headers=_auth(store))
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"] and second.json()["status"] == "duplicate"
    batch = {"events": [ev, {**ev, "idempotency_key": "new"}, {**ev, "idempotency_key": "new"}]}
    resp = client.post("/api/v1/feedback/batch", json=batch, headers=_auth(store))
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert [r["status"] for r in out["results"]] == ["duplicate", "created", "duplicate"]
    assert out["results"][1]["id"] == out["results"][2]["id"]
    assert (out["created"], out["duplicates"]) == (1, 2)
    with session_scope(store.url) as s:
        n = s.scalar(select(func.count()).select_from(Feedback)
                     .where(Feedback.api_idempotency_key.isnot(None)))
    assert n == 2


def test_batch_is_all_or_nothing_and_422_names_the_field(client: TestClient, store: Any) -> None:
    a, b = store.responses[0]
    good = {"kind": "binary", "response_id": a, "value": True}
    bad_choice = {"kind": "pairwise", "response_a_id": a, "response_b_id": b, "choice": "left"}
    resp = client.post("/api/v1/feedback/batch", json={"events": [good, good, good, bad_choice]},
                       headers=_auth(store))
    assert resp.status_code == 422
    assert resp.json()["field"] == "events[3].choice"
    missing = {"kind": "rating", "response_id": 10**9, "scores": {"x": 1}}
    resp = client.post("/api/v1/feedback/batch", json={"events": [good, missing]},
                       headers=_auth(store))
    assert resp.status_code == 422
    assert resp.json()["field"] == "events[1].response_id"
    assert "does not exist" in resp.json()["message"]
    mixed = {"kind": "pairwise", "response_a_id": a, "response_b_id": store.responses[1][0],
             "choice": "a"}
    resp = client.post("/api/v1/feedback", json=mixed, headers=_auth(store))
    assert resp.status_code == 422 and resp.json()["field"] == "response_b_id"
    resp = client.post("/api/v1/feedback", json={"kind": "implicit", "response_id": a,
                                                 "signal": "scroll"}, headers=_auth(store))
    assert resp.status_code == 422 and resp.json()["field"] == "signal"
    with session_scope(store.url) as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 0


def test_requests_without_a_valid_key_are_rejected(client: TestClient, store: Any) -> None:
    a, _ = store.responses[0]
    ev = {"kind": "binary", "response_id": a, "value": True}
    tampered = store.key[:-2] + ("xx" if not store.key.endswith("xx") else "yy")
    for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": tampered},
                    {"Authorization": f"Basic {store.key}"}):
        resp = client.post("/api/v1/feedback", json=ev, headers=headers)
        assert resp.status_code == 401, headers
    assert client.post("/api/v1/feedback", json=ev, headers={"X-API-Key": store.key}
                       ).status_code == 201
    with session_scope(store.url) as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 1


def test_rate_limit_per_key(client: TestClient, store: Any) -> None:
    from prefline.collect.auth import create_api_key

    with session_scope(store.url) as s:
        slow = create_api_key(s, "slow", rate_per_s=0.001, burst=3)
    a, _ = store.responses[0]
    ev = {"kind": "implicit", "response_id": a, "signal": "click"}
    codes = [client.post("/api/v1/feedback", json=ev, headers={"X-API-Key": slow}).status_code
             for _ in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    limited = client.post("/api/v1/feedback", json=ev, headers={"X-API-Key": slow})
    assert int(limited.headers["Retry-After"]) >= 1
    # another key has its own bucket
    assert client.post("/api/v1/feedback", json=ev, headers=_auth(store)).status_code == 201
    too_big = client.post("/api/v1/feedback/batch", json={"events": [ev] * 4},
                          headers={"X-API-Key": slow})
    assert too_big.status_code == 429 and too_big.json()["field"] == "events"


def test_text_postgres_cannot_store_is_a_422(client: TestClient, store: Any) -> None:
    nul = {"prompt": {"text": "hi"}, "responses": [{"text": "a\x00b"}]}
    resp = client.post("/api/v1/log", json=nul, headers=_auth(store))
    assert resp.status_code == 422 and resp.json()["field"] == "responses[0].text"
    nan = '{"prompt": {"text": "hi", "context": {"x": NaN}}, "responses": [{"text": "a"}]}'
    resp = client.post("/api/v1/log", content=nan, headers={
        **_auth(store), "Content-Type": "application/json"})
    assert resp.status_code == 422 and resp.json()["field"] == "prompt.context"


def test_revoked_key_stops_working(sqlite_store: Any) -> None:
    from prefline.collect import create_app
    from prefline.collect.auth import revoke_api_key

    app = create_app(sqlite_store.url)
    app.state.collect.keys.ttl = 0.0  # no caching, so revocation applies at once
    with TestClient(app) as c:
        assert c.get("/api/v1/whoami", headers=_auth(sqlite_store)).status_code == 200
        with session_scope(sqlite_store.url) as s:
            revoke_api_key(s, "prod")
        assert c.get("/api/v1/whoami", headers=_auth(sqlite_store)).status_code == 401
