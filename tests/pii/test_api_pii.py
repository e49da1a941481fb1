"""PII policies through the real ingest API (FastAPI TestClient on SQLite, the collect test
store): redact, hash, reject with a 422 and nothing stored, keep per key, and the serve
options' errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.cli_runner import run_cli
from tests.collect.conftest import Store, seed
from tests.pii.conftest import redactor, store_text

from prefline.base.errors import PreflineError
from prefline.cli.serve import serve_redactor
from prefline.collect import create_app
from prefline.collect.auth import create_api_key
from prefline.pii.redactor import Detector
from prefline.store.db import open_store, session_scope
from prefline.store.models import Feedback, Prompt

EMAIL, PHONE = "ana.diaz@example.com", "(415) 555-2671"
LOG = {"prompt": {"messages": [
    {"role": "user", "content": f"I am {EMAIL}, call {PHONE}"},
    {"role": "assistant", "content": "Noted."},
    {"role": "user", "content": "Now summarise my account ACC-12345678"}]},
    "responses": [{"text": f"Your account ACC-12345678 belongs to {EMAIL}.", "model": "m"},
                  {"text": "I cannot see accounts.", "model": "m"}]}


@pytest.fixture
def store(sqlite_url: str) -> Store:
    s = seed(sqlite_url)
    with session_scope(sqlite_url) as session:
        s.extra_key = create_api_key(session, "trusted")  # type: ignore[attr-defined]
    return s


def _client(store: Store, detector: Detector, **settings: object) -> Iterator[TestClient]:
    app = create_app(store.url)
    app.state.collect.redactor = redactor(detector, **settings)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def redacting(store: Store, detector: Detector) -> Iterator[TestClient]:
    yield from _client(store, detector, pii_default="redact")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _count(url: str, model: type) -> int:
    engine = open_store(url)
    with engine.connect() as conn:
        n = int(conn.scalar(select(func.count()).select_from(model)) or 0)
    engine.dispose()
    return n


def test_log_and_feedback_are_redacted(store: Store, redacting: TestClient) -> None:
    res = redacting.post("/api/v1/log", json=LOG, headers=_auth(store.key))
    assert res.status_code == 201, res.text
    a, b = res.json()["response_ids"]
    res = redacting.post("/api/v1/feedback", headers=_auth(store.key), json={
        "kind": "pairwise", "response_a_id": a, "response_b_id": b, "choice": "b",
        "rationale": f"A leaks {EMAIL} and card 4111 1111 1111 1111"})
    assert res.status_code == 201, res.text
    stored = store_text(store.url)
    assert EMAIL not in stored and "555-2671" not in stored and "ACC-12345678" not in stored
    assert "I am <EMAIL_ADDRESS>, call <PHONE_NUMBER>" in stored
    assert "Your account <ACCOUNT_ID> belongs to <EMAIL_ADDRESS>." in stored
    assert "A leaks <EMAIL_ADDRESS> and card <CREDIT_CARD>" in stored


def test_reject_is_a_422_naming_field_and_type_and_stores_nothing(
        store: Store, detector: Detector) -> None:
    for client in _client(store, detector, pii_policies={"api:prod": "reject"}):
        prompts = _count(store.url, Prompt)
        res = client.post("/api/v1/log", json=LOG, headers=_auth(store.key))
        assert res.status_code == 422
        body = res.json()
        assert body["field"] == "prompt.messages[0].content"
        assert body["message"].startswith("prompt.messages[0].content: holds personal data "
                                          "(EMAIL_ADDRESS), and source 'api:prod' refuses")
        assert EMAIL not in res.text and "555" not in res.text
        assert _count(store.url, Prompt) == prompts
        feedback = _count(store.url, Feedback)
        a, b = store.responses[0]
        res = client.post("/api/v1/feedback/batch", headers=_auth(store.key), json={"events": [
            {"kind": "pairwise", "response_a_id": a, "response_b_id": b, "choice": "a",
             "rationale": "clearer"},
            {"kind": "binary", "response_id": a, "value": True,
             "rationale": f"reach me on {PHONE}"}]})
        assert res.status_code == 422 and res.json()["field"] == "events[1].rationale"
        assert "PHONE_NUMBER" in res.json()["message"] and "555" not in res.text
        assert _count(store.url, Feedback) == feedback  # the whole batch refused
        # another key's source keeps its text (default keep)
        res = client.post("/api/v1/log", json=LOG, headers=_auth(store.extra_key))
        assert res.status_code == 201 and EMAIL in store_text(store.url)


def test_hash_links_the_same_value_across_requests(store: Store, detector: Detector) -> None:
    for client in _client(store, detector, pii_default="hash"):
        a, b = store.responses[0]
        for text in (f"mail {EMAIL}", f"mail {EMAIL.upper()}", "mail bo.lee@example.com"):
            res = client.post("/api/v1/feedback", headers=_auth(store.key), json={
                "kind": "binary", "response_id": a, "value": True, "rationale": text})
            assert res.status_code == 201, res.text
    engine = open_store(store.url)
    with engine.connect() as conn:
        notes = conn.scalars(select(Feedback.rationale).where(Feedback.rationale.is_not(None))
                             .order_by(Feedback.id)).all()
    engine.dispose()
    assert notes[0] == notes[1] != notes[2] and notes[0].startswith("mail <EMAIL_ADDRESS:")


def test_serve_options_fail_clearly(capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["serve", "--pii-default", "scrub"], capsys)
    assert code == 2 and "field 'pii_default': unknown redaction policy 'scrub'; expected " \
                          "one of redact, hash, reject, keep" in err
    code, _, err = run_cli(["serve", "--pii-policies", "[1]"], capsys)
    assert code == 2 and "pii_policies" in err
    monkeypatch.delenv("PREFLINE_PII_SALT", raising=False)
    with pytest.raises(PreflineError, match=r"needs a secret salt in \$PREFLINE_PII_SALT"):
        serve_redactor(None, None, '{"api:*": "hash"}')
    assert serve_redactor(None, None, None) is None  # keep everywhere: Presidio never loads
