"""Issue 16, authentication hardening: the reproductions as regression tests.

Login throttling per account and per address with lockout and Retry-After, single-use
login CSRF tokens, throttled API-key guessing, server-measured time on task, no-store on
pages, and no query-string text on the login page.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from prefline.collect import create_app
from prefline.collect.state import Brakes
from prefline.collect.throttle import SingleUseTokens, Throttle
from prefline.store.collect_models import Assignment
from prefline.store.db import session_scope
from prefline.store.models import Feedback

PASSWORD = "correct horse battery"


class FakeClock:
    """Time that moves only when the test says so (no sleeping, no timed assertions)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _app(url: str, clock: FakeClock, accounts: int = 5, addresses: int = 20) -> Any:
    """The app with the default brakes on a fake clock (smaller limits keep the slow,
    deliberately expensive password checks few)."""
    app = create_app(url)
    app.state.collect.brakes = Brakes(
        accounts=Throttle(accounts, 900.0, 60.0, clock=clock),
        addresses=Throttle(addresses, 900.0, 60.0, clock=clock),
        api_keys=Throttle(20, 60.0, 30.0, 900.0, clock=clock),
        login_tokens=SingleUseTokens(clock=clock))
    return app


def _token(client: TestClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert found is not None
    return found.group(1)


def _try(client: TestClient, username: str, password: str) -> Any:
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": _token(client)}, follow_redirects=False)


def test_forty_wrong_passwords_lock_the_account_with_retry_after(store: Any) -> None:
    """Reproduction: 40 wrong passwords in 6 s were all answered 401."""
    clock = FakeClock()
    with TestClient(_app(store.url, clock)) as c:
        codes = [_try(c, "alice", f"guess {i}").status_code for i in range(40)]
        assert codes[:4] == [401] * 4 and set(codes[4:]) == {429}
        locked = _try(c, "alice", PASSWORD)  # even the right password waits
        assert locked.status_code == 429
        assert 0 < int(locked.headers["retry-after"]) <= 60
        assert "Too many failed logins" in locked.text
        clock.now += 61
        assert _try(c, "alice", PASSWORD).status_code == 303
        # a success clears the account's count: one more wrong password is a plain 401
        c.cookies.clear()
        assert _try(c, "alice", "wrong again").status_code == 401


def test_lockouts_double_and_unknown_names_look_the_same(sqlite_store: Any) -> None:
    clock = FakeClock()
    with TestClient(_app(sqlite_store.url, clock, accounts=2)) as c:
        for name in ("alice", "nobody-here"):
            codes = [_try(c, name, "nope nope").status_code for _ in range(3)]
            assert codes == [401, 429, 429]
            assert _try(c, name, "nope").headers["retry-after"] == "60"
        clock.now += 61
        for _ in range(2):
            again = _try(c, "alice", "still wrong")
        assert again.headers["retry-after"] == "120"  # the second lockout in a row doubles


def test_one_address_trying_many_accounts_is_locked(sqlite_store: Any) -> None:
    clock = FakeClock()
    with TestClient(_app(sqlite_store.url, clock, addresses=4)) as c:
        codes = [_try(c, f"user{i}", "wrong password").status_code for i in range(5)]
        assert codes == [401, 401, 401, 429, 429]  # one failure per name, four from here
        assert _try(c, "bob", PASSWORD).status_code == 429  # the address, not the account
        clock.now += 61
        assert _try(c, "bob", PASSWORD).status_code == 303


def test_login_csrf_token_is_single_use(store: Any) -> None:
    """Reproduction: a login CSRF token could be posted again and again."""
    with TestClient(create_app(store.url)) as c:
        token = _token(c)
        form = {"username": "alice", "password": "wrong password", "csrf_token": token}
        assert c.post("/login", data=form).status_code == 401
        c.cookies.set("prefline_login_csrf", token)  # replay with the matching cookie too
        replay = c.post("/login", data={**form, "password": PASSWORD}, follow_redirects=False)
        assert replay.status_code == 403 and "expired" in replay.text
        assert "prefline_session" not in c.cookies
        # a token never issued by the server is refused even when the cookie matches it
        c.cookies.set("prefline_login_csrf", "made-up-token")
        forged = c.post("/login", data={**form, "password": PASSWORD,
                                        "csrf_token": "made-up-token"})
        assert forged.status_code == 403
        ok = _try(c, "alice", PASSWORD)
        assert ok.status_code == 303
        c.cookies.clear()
        c.cookies.set("prefline_login_csrf", token)
        assert c.post("/login", data={**form, "password": PASSWORD}).status_code == 403


def test_single_use_tokens_expire_and_stay_bounded() -> None:
    clock = FakeClock()
    tokens = SingleUseTokens(ttl=10.0, clock=clock)
    first, second = tokens.issue(), tokens.issue()
    assert tokens.consume(first) and not tokens.consume(first)
    clock.now += 11
    assert not tokens.consume(second) and not tokens.consume(None)
    tokens.MAX_ENTRIES = 8  # type: ignore[misc]
    issued = [tokens.issue() for _ in range(30)]
    assert len(tokens._expiry) <= 8 and tokens.consume(issued[-1])


def test_throttle_forgets_after_a_quiet_spell_and_stays_bounded() -> None:
    clock = FakeClock()
    throttle = Throttle(2, 10.0, 5.0, max_lockout=20.0, clock=clock)
    assert throttle.failed("k") == 0 and throttle.failed("k") == 5
    clock.now += 6
    assert throttle.retry_after("k") == 0
    clock.now += 31  # quiet for window + max lockout: the strikes are forgotten
    throttle.failed("k")
    assert throttle.failed("k") == 5
    throttle.MAX_ENTRIES = 10  # type: ignore[misc]
    for i in range(100):
        throttle.failed(f"spray{i}")
    assert len(throttle._entries) <= 10
    with pytest.raises(ValueError):
        Throttle(0, 1.0, 1.0)


def test_invalid_api_keys_are_throttled_per_address(store: Any) -> None:
    """Reproduction: failed API-key lookups were not throttled."""
    clock = FakeClock()
    with TestClient(_app(store.url, clock)) as c:
        codes = []
        for i in range(25):
            bad = c.get("/api/v1/whoami", headers={"X-API-Key": f"pk_{i:08x}_guess"})
            codes.append(bad.status_code)
        assert codes[:19] == [401] * 19 and set(codes[19:]) == {429}
        assert int(bad.headers["retry-after"]) == 30
        assert "invalid API keys" in bad.json()["message"]
        assert c.get("/api/v1/whoami").status_code == 429  # no key at all is no way round
        clock.now += 31
        good = c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {store.key}"})
        assert good.status_code == 200 and good.json() == {"key": "prod"}


def test_time_spent_is_measured_by_the_server(store: Any, add_campaign: Any,
                                              login: Any) -> None:
    """Reproduction: ``time_spent_ms`` came from the form, defeating the fast-label audit."""
    cid = add_campaign(store.url, "timed", "pairwise", overlap=1)
    with TestClient(create_app(store.url)) as c:
        csrf = login(c, "alice")
        task = c.get(f"/campaigns/{cid}/next", follow_redirects=False).headers["location"]
        assert 'name="time_spent_ms"' not in c.get(task).text
        aid = int(task.rsplit("/", 1)[1])
        with session_scope(store.url) as s:  # the task was handed out 42 s ago
            assignment = s.get(Assignment, aid)
            assert assignment is not None
            assignment.assigned_at -= dt.timedelta(seconds=42)
        resp = c.post(task, data={"csrf_token": csrf, "choice": "left", "time_spent_ms": "1"},
                      follow_redirects=False)
        assert resp.status_code == 303
    with session_scope(store.url) as s:
        fb = s.scalar(select(Feedback).where(Feedback.source == f"campaign:{cid}"))
        assert fb is not None and 42_000 <= (fb.time_spent_ms or 0) < 600_000


def test_pages_are_no_store_and_assets_are_not(store: Any, add_campaign: Any,
                                               login: Any) -> None:
    """Reproduction: authenticated pages had no ``Cache-Control: no-store``."""
    cid = add_campaign(store.url, "cache", "pairwise", overlap=1)
    with TestClient(create_app(store.url)) as c:
        login(c, "root")
        task = c.get(f"/campaigns/{cid}/next", follow_redirects=False).headers["location"]
        for path in ("/", "/labels", "/admin", f"/admin/campaigns/{cid}",
                     f"/admin/campaigns/{cid}/export.jsonl", task, "/login"):
            resp = c.get(path)
            assert resp.status_code == 200, path
            assert resp.headers["cache-control"] == "no-store", path
        assert "no-store" not in c.get("/static/app.css").headers.get("cache-control", "")


def test_login_page_shows_no_text_from_the_query_string(sqlite_store: Any) -> None:
    """Reproduction: ``/login?error=`` displayed attacker-supplied text."""
    bait = "Your account is suspended. Call +1 555 0100 now"
    with TestClient(create_app(sqlite_store.url)) as c:
        for query in ({"error": bait}, {"message": bait}, {"next": bait}):
            page = c.get("/login", params=query)
            assert page.status_code == 200
            assert "555 0100" not in page.text and 'id="login-error"' not in page.text
