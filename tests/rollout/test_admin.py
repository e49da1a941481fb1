"""Who may change a rollout: an admin (session + CSRF) may; an annotator's session, an
ingest API key, a missing CSRF token or no login may not — through the admin API and the
dashboard's rollback form alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.collect.conftest import _login
from tests.rollout.conftest import Canary, Registry, start_canary

from prefline.collect import create_app
from prefline.store.db import session_scope
from prefline.store.models import Artifact


@pytest.fixture
def canary(registry: Registry) -> Canary:
    return start_canary(registry, percent=10.0, users=True)


@pytest.fixture
def client(canary: Canary) -> Iterator[TestClient]:
    with TestClient(create_app(canary.reg.url)) as c:
        yield c


def _statuses(url: str, *ids: int) -> list[str]:
    with session_scope(url) as s:
        return [s.get(Artifact, i).status for i in ids]  # type: ignore[union-attr]


def _post(client: TestClient, path: str, csrf: str | None, **headers: str) -> Any:
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return client.post(path, json={"reason": "test"}, headers=headers)


def test_annotator_cannot_promote_or_roll_back(client: TestClient, canary: Canary) -> None:
    url, cand, prod = canary.reg.url, canary.cand, canary.prod
    api = "/api/admin/rollout"
    # no login, and an ingest API key, are refused
    assert _post(client, f"{api}/artifacts/{cand}/rollback", None).status_code == 401
    resp = _post(client, f"{api}/artifacts/{cand}/promote", None,
                 Authorization=f"Bearer {canary.key}")
    assert resp.status_code == 401
    csrf = _login(client, "alice")  # an annotator
    for action in ("promote", "rollback"):
        resp = _post(client, f"{api}/artifacts/{cand}/{action}", csrf)
        assert resp.status_code == 403 and "administrators" in resp.json()["message"]
    assert _post(client, f"{api}/flags/chat", csrf).status_code == 403
    assert client.get("/admin/rollout").status_code == 403
    form = client.post(f"/admin/rollout/rollback/{cand}",
                       data={"csrf_token": csrf, "reason": "x"}, follow_redirects=False)
    assert form.status_code == 403
    assert _statuses(url, cand, prod) == ["canary", "production"]
    client.post("/logout", data={"csrf_token": csrf})
    # an admin without the CSRF token is refused too; with it, the change goes through
    csrf = _login(client, "root")
    resp = _post(client, f"{api}/artifacts/{cand}/rollback", "wrong")
    assert resp.status_code == 403 and "CSRF" in resp.json()["message"]
    resp = _post(client, f"{api}/artifacts/{cand}/promote", csrf)
    assert resp.status_code == 200 and resp.json()["new"] == "production", resp.text
    resp = _post(client, f"{api}/artifacts/{prod}/promote", csrf)
    assert resp.status_code == 409 and "retired" in resp.json()["message"]
    assert _statuses(url, cand, prod) == ["production", "retired"]
    page = client.get("/admin/rollout")
    assert page.status_code == 200 and f"#{cand}" in page.text
    assert "lifecycle.production" in page.text and "admin:root" in page.text
    form = client.post(f"/admin/rollout/rollback/{cand}", data={"csrf_token": csrf,
                                                                 "reason": "pager"},
                       follow_redirects=False)
    assert form.status_code == 303
    assert _statuses(url, cand, prod) == ["rolled_back", "production"]
