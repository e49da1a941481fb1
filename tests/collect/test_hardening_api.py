"""Issue 16 reproductions on the ingest API, on SQLite and PostgreSQL: unencodable text is a
422 naming the field and is never stored; idempotency keys are scoped by the API key's id
and a reused key with another body is a 409; 'implicit' is not a user; the store stays
usable (snapshot, audit JSON + HTML, export) after everything the API accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.collect.conftest import Store, _login
from tests.store.hardening_invariant import assert_store_usable

from prefline.collect.auth import create_api_key
from prefline.store.db import session_scope
from prefline.store.models import Annotator, Feedback

# Raw JSON bodies: the lone surrogate travels as the escape "\ud800", as a client would send it.
SURROGATE = "\\ud800"


def _post(client: TestClient, path: str, body: str, key: str) -> Any:
    return client.post(path, content=body.encode("ascii"),
                       headers={"Authorization": f"Bearer {key}",
                                "Content-Type": "application/json"})


def _count(url: str) -> int:
    with session_scope(url) as s:
        return int(s.scalar(select(func.count()).select_from(Feedback)) or 0)


def post_vote(client: TestClient, store: Store) -> None:
    """One valid pairwise vote, so that snapshots and DPO exports have something to hold."""
    a, b = store.responses[1]
    resp = client.post("/api/v1/feedback", json={"kind": "pairwise", "response_a_id": a,
                                                 "response_b_id": b, "choice": "a"},
                       headers={"Authorization": f"Bearer {store.key}"})
    assert resp.status_code == 201, resp.text


def test_lone_surrogates_are_422_naming_the_field_and_never_stored(
        client: TestClient, store: Store, tmp_path: Path) -> None:
    a, _ = store.responses[0]
    feedback = [  # (body, the field the 422 must name)
        (f'{{"kind":"rating","response_id":{a},"scores":{{"c{SURROGATE}":1}}}}', "c\\ud800"),
        (f'{{"kind":"binary","response_id":{a},"value":true,"rationale":"x{SURROGATE}"}}',
         "rationale"),
        (f'{{"kind":"binary","response_id":{a},"value":true,"user":"u{SURROGATE}"}}', "user"),
        (f'{{"kind":"binary","response_id":{a},"value":true,"idempotency_key":"{SURROGATE}"}}',
         "idempotency_key"),
        (f'{{"kind":"bin{SURROGATE}","response_id":{a}}}', "kind"),
        (f'{{"kind":"binary","response_id":{a},"value":true,"x{SURROGATE}":1}}', "x\\ud800"),
        (f'{{"kind":"binary","response_id":{a},"value":true,"rationale":"nul\\u0000"}}',
         "rationale"),
    ]
    for body, field in feedback:
        resp = _post(client, "/api/v1/feedback", body, store.key)
        assert resp.status_code == 422, (body, resp.status_code, resp.text)
        got = resp.json()
        assert field in f"{got['field']} {got['message']}", (body, got)
        batch = _post(client, "/api/v1/feedback/batch", f'{{"events":[{body}]}}', store.key)
        assert batch.status_code == 422, (body, batch.text)
    logs = [
        f'{{"prompt":{{"text":"p{SURROGATE}"}},"responses":[{{"text":"r"}}]}}',
        f'{{"prompt":{{"text":"p"}},"responses":[{{"text":"r{SURROGATE}"}}]}}',
        f'{{"prompt":{{"messages":[{{"role":"user","content":"{SURROGATE}"}}]}},'
        '"responses":[{"text":"r"}]}',
        f'{{"prompt":{{"text":"p","tags":["{SURROGATE}"]}},"responses":[{{"text":"r"}}]}}',
        f'{{"prompt":{{"text":"p","context":{{"k":"{SURROGATE}"}}}},"responses":[{{"text":"r"}}]}}',
        f'{{"prompt":{{"text":"p"}},"responses":[{{"text":"r","model":"{SURROGATE}"}}]}}',
    ]
    for body in logs:
        resp = _post(client, "/api/v1/log", body, store.key)
        assert resp.status_code == 422, (body, resp.text)
        assert "surrogate" in resp.json()["message"], resp.json()
    assert _count(store.url) == 0
    # the keep-alive connection still serves, and the store is usable
    post_vote(client, store)
    assert_store_usable(store.url, tmp_path / "out")


def test_identifiers_are_nfc_normalised(client: TestClient, store: Store) -> None:
    a, _ = store.responses[0]
    auth = {"Authorization": f"Bearer {store.key}"}
    for form in ("e\u0301", "\u00e9"):  # decomposed and precomposed é: one criterion, one user
        resp = client.post("/api/v1/feedback", json={
            "kind": "rating", "response_id": a, "scores": {f"caf{form}": 3}, "user": form},
            headers=auth)
        assert resp.status_code == 201, resp.text
    with session_scope(store.url) as s:
        payloads = s.scalars(select(Feedback.payload)).all()
        names = set(s.scalars(select(Annotator.name).where(Annotator.name.like("api:%"))))
    assert [p["scores"] for p in payloads] == [{"caf\u00e9": 3.0}] * 2
    assert names == {"api:prod:\u00e9"}


def test_same_key_with_another_body_is_409_naming_the_conflict(
        client: TestClient, store: Store) -> None:
    a, b = store.responses[0]
    auth = {"Authorization": f"Bearer {store.key}"}
    ev = {"kind": "pairwise", "response_a_id": a, "response_b_id": b, "choice": "a",
          "idempotency_key": "k1"}
    first = client.post("/api/v1/feedback", json=ev, headers=auth)
    again = client.post("/api/v1/feedback", json=ev, headers=auth)
    assert (first.status_code, again.status_code) == (201, 200)
    for changed in ({**ev, "choice": "b"},
                    {"kind": "binary", "response_id": a, "value": True, "idempotency_key": "k1"}):
        resp = client.post("/api/v1/feedback", json=changed, headers=auth)
        assert resp.status_code == 409, resp.text
        assert resp.json()["field"] == "idempotency_key"
        assert "'k1'" in resp.json()["message"] and "different body" in resp.json()["message"]
        assert f"feedback {first.json()['id']}" in resp.json()["message"]
    # in a batch: the conflicting event names its index, nothing of the batch is stored
    new = {"kind": "binary", "response_id": a, "value": True, "idempotency_key": "k2"}
    resp = client.post("/api/v1/feedback/batch", json={"events": [new, {**ev, "choice": "tie"}]},
                       headers=auth)
    assert resp.status_code == 409 and resp.json()["field"] == "events[1].idempotency_key"
    resp = client.post("/api/v1/feedback/batch",
                       json={"events": [new, {**new, "value": False}]}, headers=auth)
    assert resp.status_code == 409 and "earlier in this request" in resp.json()["message"]
    assert _count(store.url) == 1
    with session_scope(store.url) as s:
        assert s.scalars(select(Feedback.choice)).all() == ["a"]


def test_idempotency_keys_are_scoped_by_the_api_key_id(client: TestClient, store: Store) -> None:
    """Key 'a/b' + client key 'c' once equalled key 'a' + client key 'b/c' and leaked the
    other key's feedback id."""
    with session_scope(store.url) as s:
        k1 = create_api_key(s, "a/b", rate_per_s=1000, burst=1000)
        k2 = create_api_key(s, "a", rate_per_s=1000, burst=1000)
    a, _ = store.responses[0]
    ids = []
    for key, idem in ((k1, "c"), (k2, "b/c")):
        resp = client.post("/api/v1/feedback", json={
            "kind": "binary", "response_id": a, "value": True, "idempotency_key": idem},
            headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    assert ids[0] != ids[1]
    # the same client key under two API keys: two events, each retry finds its own
    for key in (k1, k2):
        resp = client.post("/api/v1/feedback", json={
            "kind": "binary", "response_id": a, "value": False, "idempotency_key": "same"},
            headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 201, resp.text
    resp = client.post("/api/v1/feedback", json={
        "kind": "binary", "response_id": a, "value": True, "idempotency_key": "c"},
        headers={"Authorization": f"Bearer {k1}"})
    assert (resp.status_code, resp.json()["id"]) == (200, ids[0])
    assert _count(store.url) == 4


def test_user_implicit_is_reserved_and_colons_cannot_collide(
        client: TestClient, store: Store) -> None:
    a, _ = store.responses[0]
    auth = {"Authorization": f"Bearer {store.key}"}
    for user in ("implicit", "IMPLICIT"):
        resp = client.post("/api/v1/feedback", json={
            "kind": "binary", "response_id": a, "value": True, "user": user}, headers=auth)
        assert resp.status_code == 422 and resp.json()["field"] == "user", resp.text
        assert "reserved" in resp.json()["message"]
    with session_scope(store.url) as s:
        other = create_api_key(s, "prod:x", rate_per_s=1000, burst=1000)
    for key, user in ((store.key, "x:u"), (other, "u")):
        resp = client.post("/api/v1/feedback", json={
            "kind": "binary", "response_id": a, "value": True, "user": user},
            headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 201, resp.text
    resp = client.post("/api/v1/feedback", json={"kind": "implicit", "response_id": a,
                                                 "signal": "copy"}, headers=auth)
    assert resp.status_code == 201
    with session_scope(store.url) as s:
        kinds = dict(s.execute(select(Annotator.name, Annotator.kind)
                               .where(Annotator.name.like("api:%"))).tuples().all())
    assert kinds == {"api:prod:x%3Au": "human", "api:prod:x:u": "human",
                     "api:prod:implicit": "implicit"}


def test_huge_ids_in_paths_are_not_500(client: TestClient, store: Store) -> None:
    _login(client, "root")  # an admin: every route below is reachable, none may overflow
    for big in (2**63, 2**64, 10**30):
        for path in (f"/tasks/{big}", f"/campaigns/{big}/next", f"/admin/campaigns/{big}",
                     f"/admin/campaigns/{big}/export.jsonl", f"/labels/{big}"):
            resp = client.get(path, follow_redirects=False)
            assert resp.status_code in (400, 404, 422), (path, resp.status_code)
