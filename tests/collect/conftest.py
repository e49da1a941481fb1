"""Fixtures for the collection app: a store with users, a key, logged responses, campaigns."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prefline.collect import create_app
from prefline.collect.auth import create_api_key, create_user
from prefline.collect.campaigns import create_campaign
from prefline.collect.ingest import log_interaction
from prefline.collect.schemas import LogRequest
from prefline.store.db import open_store, session_scope

PASSWORD = "correct horse battery"


@dataclass
class Store:
    url: str
    key: str
    responses: list[list[int]]  # response ids per logged prompt


def seed(url: str, n_prompts: int = 4, key_rate: float = 1000.0, key_burst: int = 1000) -> Store:
    """Users alice (annotator), bob (annotator), root (admin); one API key; prompts with
    two responses each (the first prompt multi-turn, with markdown and an XSS attempt)."""
    engine = open_store(url)
    with session_scope(engine) as s:
        for name, role in (("alice", "annotator"), ("bob", "annotator"), ("root", "admin")):
            create_user(s, name, PASSWORD, role=role)
        key = create_api_key(s, "prod", rate_per_s=key_rate, burst=key_burst)
    responses = []
    for i in range(n_prompts):
        prompt = ({"messages": [{"role": "user", "content": "Hi"},
                                {"role": "assistant", "content": "Hello! How can I help?"},
                                {"role": "user", "content": f"Write code {i}"}]}
                  if i == 0 else {"text": f"Question {i}?", "tags": ["qa"]})
        req = LogRequest.model_validate({"prompt": prompt, "responses": [
            {"text": f"Answer **{i}** with `code` <script>alert('x{i}')</script>", "model": "m1"},
            {"text": f"Other answer {i}\n```python\nprint({i})\n```", "model": "m2"},
        ]})
        responses.append(log_interaction(engine, req)[1])
    return Store(url, key, responses)


@pytest.fixture
def store(db_url: str) -> Store:
    return seed(db_url)


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Store:
    return seed(sqlite_url)


def _add_campaign(url: str, name: str = "c1", kind: str = "pairwise", overlap: int = 2,
                 criteria: tuple[str, ...] = (), blind: bool = True) -> int:
    with session_scope(url) as s:
        return create_campaign(s, name, kind, list(criteria), overlap=overlap, blind=blind).id


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store.url)) as c:
        yield c


def _login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token (from the queue page)."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    resp = client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token.group(1)}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    home = client.get("/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
    assert csrf is not None
    return csrf.group(1)


@pytest.fixture
def login() -> Callable[..., str]:
    """``login(client, username)`` → the session's CSRF token."""
    return _login


@pytest.fixture
def add_campaign() -> Callable[..., int]:
    """``add_campaign(url, name, kind, overlap, criteria, blind)`` → campaign id."""
    return _add_campaign


@pytest.fixture
def seed_store() -> Callable[..., Store]:
    return seed


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def server(sqlite_store: Store) -> Iterator[str]:
    """The app under uvicorn on a free loopback port in a thread, stopped after the test."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(create_app(sqlite_store.url), host="127.0.0.1", port=port,
                            log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright; fails (never skips) when it is missing."""
    assert CHROMIUM.exists(), "Chromium is not installed: run ./scripts/browser-setup.sh"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def alice_page(chromium: Any, server: str) -> Any:
    """A Chromium page logged in as alice through the form, on the task queue."""
    page = chromium.new_page()
    page.goto(f"{server}/login")
    page.fill("#username", "alice")
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url(f"{server}/")
    return page
