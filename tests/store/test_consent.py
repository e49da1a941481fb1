"""Per-user consent (issue 14 item 6) on SQLite and PostgreSQL: snapshots keep only the
feedback of users whose latest consent covers their purpose and count what they left out
(records and users, by reason); a revoked consent keeps the data out of the next snapshot
while stored snapshots stay as they were; feedback without a user goes in unless
``require_consent``; bad purposes are one sentence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cli_runner import run_cli
from prefline.base.errors import PreflineError
from prefline.formats.jsonl import write_jsonl
from prefline.store.consent import (
    EVALUATION_ONLY,
    NO_CONSENT,
    NO_USER,
    REVOKED,
    consent_history,
    set_consent,
)
from prefline.store.context import Context, Store
from prefline.store.db import open_store
from prefline.store.ingest import import_file
from prefline.store.snapshot_config import SnapshotConfig
from prefline.store.snapshots import run, snapshot_items


def _pair(user: str | None, prompt: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"prompt": prompt, "chosen": "good", "rejected": "bad"}
    return rec if user is None else {**rec, "user": user, "segment": {"style": "concise"}}


# u1: training consent; u2: evaluation only; u3: none recorded; u4: revoked; one anonymous.
RECORDS = [_pair("u1", "p1"), _pair("u1", "p2"), _pair("u2", "p3"), _pair("u3", "p4"),
           _pair("u4", "p5"), _pair(None, "p6")]


def _fill(url: str, tmp_path: Path) -> str:
    import_file(write_jsonl(tmp_path / "c.jsonl", RECORDS), url)
    engine = open_store(url)
    set_consent(engine, "u1", "training")
    set_consent(engine, "u2", "evaluation")
    set_consent(engine, "u4", "training")
    set_consent(engine, "u4", "none")  # the latest row wins
    return url


def _snap(url: str, **cfg: Any) -> Any:
    return run(SnapshotConfig(test_fraction=0.0, **cfg), Context(store=Store.open(url)))


def _users(url: str, sid: int) -> list[str]:
    return sorted(i["data"].get("user", "-") for i in snapshot_items(sid, db=url))


def test_training_snapshot_keeps_consented_users_and_counts_the_rest(db_url: str,
                                                                     tmp_path: Path) -> None:
    url = _fill(db_url, tmp_path)
    result = _snap(url)
    assert _users(url, result.id) == ["-", "u1", "u1"]
    assert result.stats.purpose == "training" and result.recipe["purpose"] == "training"
    assert result.stats.excluded == {
        "records": {EVALUATION_ONLY: 1, NO_CONSENT: 1, REVOKED: 1},
        "users": {EVALUATION_ONLY: 1, NO_CONSENT: 1, REVOKED: 1}}
    assert result.stats.feedback == 3
    # the per-kind line adds up: 6 records = 3 items + 3 left out by consent
    assert result.stats.dropped["pairwise"] == {"records without training consent": 3}


def test_evaluation_snapshot_also_takes_evaluation_only_consent(db_url: str,
                                                                tmp_path: Path) -> None:
    url = _fill(db_url, tmp_path)
    result = _snap(url, purpose="evaluation")
    assert _users(url, result.id) == ["-", "u1", "u1", "u2"]
    assert result.stats.excluded["records"] == {NO_CONSENT: 1, REVOKED: 1}


def test_require_consent_leaves_out_feedback_without_a_user(db_url: str,
                                                            tmp_path: Path) -> None:
    url = _fill(db_url, tmp_path)
    result = _snap(url, require_consent=True)
    assert _users(url, result.id) == ["u1", "u1"]
    assert result.stats.excluded["records"][NO_USER] == 1
    assert NO_USER not in result.stats.excluded["users"]  # no user to count


def test_revoked_consent_keeps_data_out_of_the_next_snapshot_only(db_url: str,
                                                                  tmp_path: Path) -> None:
    url = _fill(db_url, tmp_path)
    before = _snap(url, name="before")
    items_before = snapshot_items(before.id, db=url)
    set_consent(open_store(url), "u1", "none")
    after = _snap(url, name="after")
    assert after.content_hash != before.content_hash
    assert _users(url, after.id) == ["-"]
    assert after.stats.excluded["records"][REVOKED] == 3  # u1's two records and u4's one
    assert after.stats.excluded["users"][REVOKED] == 2
    assert snapshot_items(before.id, db=url) == items_before  # the stored snapshot is frozen
    assert "u1" in _users(url, before.id)
    set_consent(open_store(url), "u1", "training")  # consent given again: back in
    assert _users(url, _snap(url).id) == ["-", "u1", "u1"]


def test_consent_history_keeps_every_decision(db_url: str, tmp_path: Path) -> None:
    url = _fill(db_url, tmp_path)
    assert [e.purpose for e in consent_history(open_store(url), "u4")] == ["training", "none"]
    assert consent_history(open_store(url), "nobody") == []


def test_nothing_left_after_consent_says_so(db_url: str, tmp_path: Path) -> None:
    import_file(write_jsonl(tmp_path / "u.jsonl", [_pair("u9", "p")]), db_url)
    with pytest.raises(PreflineError, match="consent leaves no feedback for a training "
                       "snapshot .*1 records: no consent recorded") as err:
        _snap(db_url)
    assert err.value.field == "purpose"


def test_bad_purpose_and_user_are_one_sentence(db_url: str) -> None:
    engine = open_store(db_url)
    with pytest.raises(PreflineError, match="unknown purpose 'marketing'; expected one of "
                       "training, evaluation, none") as err:
        set_consent(engine, "u1", "marketing")
    assert err.value.field == "purpose"
    with pytest.raises(PreflineError, match="e-mail address") as err:
        set_consent(engine, "ann@example.org", "training")
    assert err.value.field == "user"
    with pytest.raises(PreflineError, match="unknown purpose 'none'; expected one of "
                       "training, evaluation") as err:
        SnapshotConfig(purpose="none")  # type: ignore[arg-type]
    assert err.value.field == "purpose"


def test_cli_records_shows_and_applies_consent(db_url: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    url = _fill(db_url, tmp_path)
    code, out, err = run_cli(["users", "consent", "u3", "training", "--db", url], capsys)
    assert code == 0 and "consent of u3: training" in out, err
    code, out, _ = run_cli(["users", "consent", "u4", "--db", url], capsys)
    assert code == 0 and [ln.split()[2] for ln in out.splitlines()] == ["training", "none"]
    code, _, err = run_cli(["users", "consent", "u3", "marketing", "--db", url], capsys)
    assert code != 0 and "unknown purpose 'marketing'" in err
    code, out, err = run_cli(["snapshot", "create", "--db", url, "--purpose", "evaluation"],
                             capsys)
    assert code == 0, err
    assert "purpose   evaluation" in out
    assert "consent   left out 1 records of 1 users: consent none" in out
    assert _users(url, int(out.split()[1])) == ["-", "u1", "u1", "u2", "u3"]


def test_admin_api_records_and_shows_consent(db_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from tests.collect.conftest import _login, seed

    from prefline.collect import create_app

    url = _fill(seed(db_url, n_prompts=1).url, tmp_path)
    with TestClient(create_app(url)) as client:
        anonymous = client.post("/api/admin/users/u1/consent", json={"purpose": "none"})
        assert anonymous.status_code == 401
        csrf = {"X-CSRF-Token": _login(client, "root")}
        done = client.post("/api/admin/users/u1/consent", json={"purpose": "none"},
                           headers=csrf)
        assert done.status_code == 200, done.text
        assert done.json()["purpose"] == "none" and done.json()["actor"] == "admin:root"
        bad = client.post("/api/admin/users/u1/consent", json={"purpose": "marketing"},
                          headers=csrf)
        assert bad.status_code == 422 and bad.json()["field"] == "purpose"
        log = client.get("/api/admin/users/u1/consent", headers=csrf)
        assert [e["purpose"] for e in log.json()] == ["training", "none"]
    result = _snap(url)  # the API's revocation keeps u1 out of the next snapshot
    assert "u1" not in _users(url, result.id)
