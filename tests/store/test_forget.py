"""``prefline users forget`` and ``POST /api/admin/users/{user}/forget`` (issue 14 item 7):
after forgetting a user, none of their strings is left in any column of any table, on
SQLite and PostgreSQL; the other user's data is intact; snapshots and models built from the
data are flagged; the tombstone holds no content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.cli_runner import run_cli
from tests.collect.conftest import _login
from tests.store.forget_seed import (
    A_TEXTS,
    B_TEXTS,
    CAROL,
    PASSWORD,
    SHARED,
    A,
    B,
    Seeded,
    search_everywhere,
    seed,
)

from prefline.base.privacy import pseudonym
from prefline.collect import create_app
from prefline.collect.auth import create_api_key, create_user
from prefline.store.db import open_store, session_scope
from prefline.store.forget import ACTION, api_escaped, forget_user, was_forgotten
from prefline.store.models import Artifact, AuditLog, Feedback, Snapshot
from prefline.store.rollout_models import RolloutFlag
from prefline.store.snapshots import snapshot_items


def _traces(user: str, texts: tuple[str, ...] = ()) -> set[str]:
    return {user, api_escaped(user), pseudonym(user), *texts}


def _flags(url: str) -> dict[str, dict[int, bool]]:
    with session_scope(url) as s:
        return {"snapshots": dict(s.execute(select(Snapshot.id, Snapshot.contains_forgotten_data)).all()),
                "artifacts": dict(s.execute(select(Artifact.id, Artifact.contains_forgotten_data)).all())}


def _forget_via(how: str, url: str, user: str, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    if how == "cli":
        code, out, err = run_cli(["users", "forget", user, "--yes", "--db", url, "--json"], capsys)
        assert code == 0, err
        return json.loads(out)
    with TestClient(create_app(url)) as client:
        csrf = _login(client, "root", PASSWORD)
        resp = client.post(f"/api/admin/users/{user}/forget", headers={"X-CSRF-Token": csrf})
        assert resp.status_code == 200, resp.text
        return resp.json()


def _listings_show_the_flag(data: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    """``registry list|status``, ``snapshot list|show`` say which were built from it."""
    with session_scope(data.url) as s:
        s.add(RolloutFlag(name="chat", production_id=data.policy, candidate_id=data.unrelated))
    mark = "contains_forgotten_data"
    _, out, _ = run_cli(["registry", "list", "--db", data.url], capsys)
    flagged = {int(line.split()[0]) for line in out.splitlines() if line.endswith(mark)}
    assert flagged == {data.reward_model, data.policy}
    _, out, _ = run_cli(["registry", "status", "--db", data.url], capsys)
    arms = {line.split()[0]: line.endswith(mark) or f"){' ' * 2}{mark}" in line
            for line in out.splitlines()[1:]}
    assert arms == {"production": True, "candidate": False}
    _, out, _ = run_cli(["snapshot", "list", "--db", data.url], capsys)
    assert [line.endswith(mark) for line in out.splitlines()] == [True, False]
    _, out, _ = run_cli(["snapshot", "show", "all", "--db", data.url], capsys)
    assert f"{mark}: yes" in out


@pytest.mark.parametrize("how", ["cli", "api"])
def test_forget_leaves_no_trace_of_the_user(db_url: str, tmp_path: Path, how: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data: Seeded = seed(db_url, tmp_path)
    engine = open_store(db_url)
    assert search_everywhere(engine, _traces(A, A_TEXTS))  # the search does find them before
    before_b = len(snapshot_items(data.snapshot_bravo, db=db_url))
    result = _forget_via(how, db_url, A, capsys)
    assert search_everywhere(engine, _traces(A, A_TEXTS)) == []
    if db_url.startswith("sqlite"):  # not even in the file's free pages or its WAL
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
        assert [t for t in A_TEXTS if t.encode() in raw] == []
    # The other user's data is intact, and so is the prompt both users judged.
    needles = _traces(B, B_TEXTS) | {SHARED["prompt"], SHARED["chosen"], SHARED["rejected"]}
    assert {n for _, _, n in search_everywhere(engine, needles)} == needles
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).where(Feedback.user_id == B)) == data.b_feedback
    assert len(snapshot_items(data.snapshot_bravo, db=db_url)) == before_b
    # Lineage: the snapshot that held A's data and everything built on it are flagged.
    flags = _flags(db_url)
    assert flags["snapshots"] == {data.snapshot_all: True, data.snapshot_bravo: False}
    assert flags["artifacts"] == {data.reward_model: True, data.policy: True,
                                  data.unrelated: False}
    assert result["snapshots"] == [data.snapshot_all]
    assert result["artifacts"] == [data.reward_model, data.policy]
    counts = result["counts"]
    # A's 3 labels and carol's label on A's chat (made from A's text: it goes with it, as
    # does the campaign item showing it); the prompt A shares with B is kept.
    assert counts["feedback"] == 4 and counts["campaign_items"] == 1
    assert counts["consents"] == 1 and counts["served_responses"] == 1
    assert counts["prompts"] == 2 and counts["responses"] == 4
    if how == "cli":
        _listings_show_the_flag(data, capsys)
    # The tombstone: who and when, a salted hash and counts, no content (searched above).
    with session_scope(db_url) as s:
        tomb = s.get(AuditLog, result["tombstone_id"])
        assert tomb is not None and tomb.action == ACTION and tomb.target is None
        assert tomb.actor == ("cli" if how == "cli" else "admin:root")
        assert set(tomb.details) == {"user_hash", "salt", "iterations", "counts", "snapshots",
                                     "artifacts"}
    assert was_forgotten(db_url, A) == [result["tombstone_id"]]
    assert was_forgotten(db_url, B) == []


def test_forget_an_annotator_account(db_url: str, tmp_path: Path) -> None:
    """An app account: its labels (rationale), assignments, sessions, user row and the
    audit rows naming it (``user.create user:<name>``) lose every trace of the name."""
    seed(db_url, tmp_path)
    engine = open_store(db_url)
    assert search_everywhere(engine, {CAROL})
    result = forget_user(db_url, CAROL, actor="cli")
    assert search_everywhere(engine, {CAROL}) == []
    assert result.counts["users"] == 1 and result.counts["annotators"] == 1
    assert result.counts["assignments"] == 1 and result.counts["audit_log"] >= 1
    assert result.counts["feedback"] == 1  # the label; the campaign's prompt stays
    needles = set(A_TEXTS + B_TEXTS)
    assert {n for _, _, n in search_everywhere(engine, needles)} == needles
    # An administrator who forgets themself is not named by the tombstone either.
    admin = "adm-zeta-4471"
    with session_scope(db_url) as s:
        create_user(s, admin, PASSWORD, role="admin")
    assert forget_user(db_url, admin, actor=f"admin:{admin}").counts["users"] == 1
    assert search_everywhere(engine, {admin}) == []


def test_forgetting_an_unknown_user_fails_clearly(sqlite_url: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    seed(sqlite_url, tmp_path)
    with session_scope(sqlite_url) as s:
        audit_rows = s.scalar(select(func.count()).select_from(AuditLog))
    code, out, err = run_cli(["users", "forget", "nobody-42", "--yes", "--db", sqlite_url],
                             capsys)
    assert code != 0
    assert "holds nothing about user 'nobody-42'" in err and "nothing was forgotten" in err
    assert len(err.strip().splitlines()) == 1
    with TestClient(create_app(sqlite_url)) as client:
        csrf = _login(client, "root", PASSWORD)
        resp = client.post("/api/admin/users/nobody-42/forget", headers={"X-CSRF-Token": csrf})
        assert resp.status_code == 404 and "nothing was forgotten" in resp.json()["message"]
        assert client.post(f"/api/admin/users/{A}/forget").status_code == 403  # no CSRF token
    with session_scope(sqlite_url) as s:  # nothing changed, no tombstone
        assert s.scalar(select(func.count()).select_from(AuditLog)) == audit_rows


def test_a_running_ingest_server_refuses_feedback_on_forgotten_responses(db_url: str) -> None:
    """The ingest API caches response ids; after a forget, feedback naming one of the
    deleted responses is a 422 naming the field (not a 500 from the foreign key)."""
    open_store(db_url)
    with session_scope(db_url) as s:
        key = create_api_key(s, "prod")
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(db_url), raise_server_exceptions=False) as client:
        ids = client.post("/api/v1/log", headers=auth, json={"prompt": {"text": "hi there"},
                          "responses": [{"text": "a1"}, {"text": "b1"}]}).json()["response_ids"]
        event = {"kind": "pairwise", "response_a_id": ids[0], "response_b_id": ids[1],
                 "choice": "a", "user": "u-gone"}
        assert client.post("/api/v1/feedback", headers=auth, json=event).status_code == 201
        assert forget_user(db_url, "u-gone").counts["responses"] == 2
        resp = client.post("/api/v1/feedback", headers=auth, json={**event, "choice": "b"})
        assert resp.status_code == 422, resp.text
        assert resp.json()["field"] == "response_a_id"
