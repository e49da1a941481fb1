"""Authorization: roles, sessions, CSRF, hashed secrets, and no peeking at others' labels."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from prefline.base.errors import PreflineError
from prefline.collect import create_app
from prefline.collect.auth import create_user
from prefline.store.collect_models import ApiKey, User, UserSession
from prefline.store.db import session_scope


def _label_once(client: TestClient, csrf: str, cid: int) -> int:
    aid = client.get(f"/campaigns/{cid}/next", follow_redirects=False).headers["location"]
    client.post(aid, data={"csrf_token": csrf, "choice": "tie"}, follow_redirects=False)
    page = client.get("/labels").text
    return int(re.search(r'href="/labels/(\d+)"', page).group(1))  # type: ignore[union-attr]


def test_annotator_is_blocked_from_admin_and_others_labels(store: Any, add_campaign: Any,
                                                           login: Any) -> None:
    cid = add_campaign(store.url, "c", "pairwise", overlap=2)
    app = create_app(store.url)
    with TestClient(app) as alice, TestClient(app) as bob, TestClient(app) as root:
        alice_label = _label_once(alice, login(alice, "alice"), cid)
        bob_csrf = login(bob, "bob")
        for path in ("/admin", f"/admin/campaigns/{cid}", f"/admin/campaigns/{cid}/export.jsonl"):
            resp = bob.get(path)
            assert resp.status_code == 403, path
            assert "alice" not in resp.text
        assert bob.get(f"/labels/{alice_label}").status_code == 404
        assert f"/labels/{alice_label}\"" not in bob.get("/labels").text
        assert alice.get(f"/labels/{alice_label}").status_code == 200
        # bob cannot open or answer alice's assignment
        with session_scope(store.url) as s:
            alice_task = s.execute(text("SELECT id FROM assignments")).scalar()
        assert bob.get(f"/tasks/{alice_task}").status_code == 404
        assert bob.post(f"/tasks/{alice_task}", data={"csrf_token": bob_csrf,
                                                      "choice": "left"}).status_code == 404
        login(root, "root")
        assert root.get(f"/labels/{alice_label}").status_code == 200
        assert root.get(f"/admin/campaigns/{cid}").status_code == 200


def test_pages_need_a_session(sqlite_store: Any) -> None:
    with TestClient(create_app(sqlite_store.url)) as c:
        for path in ("/", "/labels", "/admin", "/tasks/1", "/campaigns/1/next"):
            resp = c.get(path, follow_redirects=False)
            assert resp.status_code == 303 and resp.headers["location"] == "/login", path
        c.cookies.set("prefline_session", "forged")
        assert c.get("/admin", follow_redirects=False).status_code == 303


def test_csrf_is_required_for_every_post(sqlite_store: Any, add_campaign: Any,
                                         login: Any) -> None:
    cid = add_campaign(sqlite_store.url, "c", "pairwise", overlap=1)
    with TestClient(create_app(sqlite_store.url)) as c:
        login(c, "alice")
        task = c.get(f"/campaigns/{cid}/next", follow_redirects=False).headers["location"]
        for data in ({"choice": "left"}, {"choice": "left", "csrf_token": "guess"}):
            assert c.post(task, data=data).status_code == 403
        assert c.post("/logout", data={}).status_code == 403
        # login form itself: the double-submit cookie must match
        c.cookies.clear()
        c.get("/login")
        resp = c.post("/login", data={"username": "alice", "password": "correct horse battery",
                                      "csrf_token": "forged"})
        assert resp.status_code == 403
    with session_scope(sqlite_store.url) as s:
        assert s.execute(text("SELECT count(*) FROM feedback")).scalar() == 0


def test_wrong_password_and_logout(sqlite_store: Any, login: Any) -> None:
    with TestClient(create_app(sqlite_store.url)) as c:
        page = c.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        bad = c.post("/login", data={"username": "alice", "password": "wrong password",
                                     "csrf_token": token})
        assert bad.status_code == 401 and "Wrong username or password" in bad.text
        csrf = login(c, "alice")
        assert c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False
                      ).status_code == 303
        assert c.get("/", follow_redirects=False).status_code == 303
    with session_scope(sqlite_store.url) as s:
        assert s.scalars(select(UserSession)).all() == []


def test_secrets_are_stored_hashed(sqlite_store: Any) -> None:
    with session_scope(sqlite_store.url) as s:
        user = s.scalar(select(User).where(User.username == "alice"))
        key = s.scalar(select(ApiKey).where(ApiKey.name == "prod"))
        assert user is not None and key is not None
        assert user.password_hash.startswith("$argon2id$")
        assert "correct horse" not in user.password_hash
        assert sqlite_store.key not in key.key_hash and len(key.key_hash) == 64
        with pytest.raises(PreflineError, match="role"):
            create_user(s, "carol", "long enough", role="root")
        with pytest.raises(PreflineError, match="at least 8"):
            create_user(s, "carol", "short")
        with pytest.raises(PreflineError, match="already exists"):
            create_user(s, "alice", "long enough")
