"""User and segment on stored feedback and snapshots (issue 14 item 1), on SQLite and
PostgreSQL: import and the ingest API store them, snapshots keep them per item and give them
back on the examples, ``--segment`` filters, stats count items per segment value, and the
CLI prints those counts k-anonymously."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.collect.conftest import seed

from cli_runner import run_cli
from prefline.base.errors import PreflineError
from prefline.collect import create_app
from prefline.formats.examples import PreferencePair
from prefline.formats.jsonl import write_jsonl
from prefline.store.consent import set_consent
from prefline.store.context import Context, Store
from prefline.store.db import open_store, session_scope
from prefline.store.ingest import import_file
from prefline.store.models import Feedback
from prefline.store.snapshot_config import Filters, SnapshotConfig
from prefline.store.snapshots import run, snapshot_examples, snapshot_items

CONCISE, DETAILED = {"style": "concise"}, {"style": "detailed"}
# The same pair judged both ways: the concise user prefers the short answer, the detailed
# user the long one; one record has no user (not personal data).
RECORDS: list[dict[str, Any]] = [
    {"prompt": "p", "chosen": "short", "rejected": "long answer", "user": "u1",
     "segment": CONCISE, "annotator": "judge-a"},
    {"prompt": "p", "chosen": "long answer", "rejected": "short", "user": "u2",
     "segment": DETAILED, "annotator": "judge-b"},
    {"prompt": "q", "completion": "ok", "label": True, "user": "u2", "segment": DETAILED},
    {"prompt": "r", "chosen": "x", "rejected": "y"},
]


def _store(url: str, tmp_path: Path) -> str:
    import_file(write_jsonl(tmp_path / "seg.jsonl", RECORDS), url)
    for user in ("u1", "u2"):
        set_consent(open_store(url), user, "training")
    return url


def _snap(url: str, **cfg: Any) -> Any:
    return run(SnapshotConfig(**cfg), Context(store=Store.open(url)))


def test_import_stores_user_and_segment_on_feedback(db_url: str, tmp_path: Path) -> None:
    _store(db_url, tmp_path)
    with session_scope(db_url) as s:
        rows = s.execute(select(Feedback.user_id, Feedback.segment).order_by(Feedback.id)).all()
    assert [tuple(r) for r in rows] == [("u1", CONCISE), ("u2", DETAILED), ("u2", DETAILED),
                                        (None, None)]


def test_snapshot_keeps_person_per_item_and_restores_examples(db_url: str,
                                                              tmp_path: Path) -> None:
    url = _store(db_url, tmp_path)
    result = _snap(url, test_fraction=0.0)
    # Two users disagreeing on one pair are two items, not one tie.
    pairs = [i["data"] for i in snapshot_items(result.id, db=url) if i["kind"] == "pairwise"]
    assert sorted((d.get("user", ""), d["chosen"]) for d in pairs) == [
        ("", "x"), ("u1", "short"), ("u2", "long answer")]
    assert "user" not in next(d for d in pairs if d["chosen"] == "x")  # old shape kept
    assert result.stats.segments == {"style": {"concise": 1, "detailed": 2}}
    examples = snapshot_examples(result.id, "all", url)
    people = sorted((e.user or "", tuple(e.segment.items())) for e in examples)
    assert people == [("", ()), ("u1", (("style", "concise"),)),
                      ("u2", (("style", "detailed"),)), ("u2", (("style", "detailed"),))]


def test_segment_filter_keeps_only_that_segment(db_url: str, tmp_path: Path) -> None:
    url = _store(db_url, tmp_path)
    result = _snap(url, filters=Filters(segment=("style=concise",)), test_fraction=0.0)
    [example] = snapshot_examples(result.id, "all", url)
    assert isinstance(example, PreferencePair)
    assert (example.user, example.chosen, example.segment) == ("u1", "short", CONCISE)
    assert result.stats.feedback_by_kind["pairwise"] == 1  # the matched records, per kind
    assert result.recipe["filters"]["segment"] == ["style=concise"]
    with pytest.raises(PreflineError, match="no feedback matches"):
        _snap(url, filters=Filters(segment=("style=concise", "locale=de")))


@pytest.mark.parametrize(("value", "says"), [
    ("concise", "expected KEY=VALUE"), ("=concise", "expected KEY=VALUE")])
def test_bad_segment_filter_is_one_sentence(value: str, says: str) -> None:
    with pytest.raises(PreflineError, match=says) as err:
        Filters(segment=(value,))
    assert err.value.field == "segment"


def test_cli_filters_by_segment_and_prints_counts_k_anonymously(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _store(db_url, tmp_path)
    code, out, err = run_cli(["snapshot", "create", "--db", url, "--min-group-size", "2"],
                             capsys)
    assert code == 0, err
    assert "segment   style: detailed 2, 1 group suppressed (n < 2)" in out
    code, out, err = run_cli(["snapshot", "create", "--db", url, "--segment", "style=detailed",
                              "--name", "detailed", "--min-group-size", "1"], capsys)
    assert code == 0, err
    assert "segment   style: detailed 2" in out and "concise" not in out
    code, out, _ = run_cli(["snapshot", "show", "detailed", "--db", url], capsys)
    assert code == 0 and "segment   style: 1 group suppressed (n < 5)" in out
    code, _, err = run_cli(["snapshot", "create", "--db", url, "--segment", "style"], capsys)
    assert code != 0 and "expected KEY=VALUE" in err


def test_api_feedback_takes_user_and_segment(db_url: str) -> None:
    store = seed(db_url, n_prompts=2)
    a, b = store.responses[1]
    auth = {"Authorization": f"Bearer {store.key}"}
    with TestClient(create_app(store.url)) as client:
        ok = client.post("/api/v1/feedback", headers=auth, json={
            "kind": "pairwise", "response_a_id": a, "response_b_id": b, "choice": "a",
            "user": "u7", "segment": CONCISE, "idempotency_key": "k1"})  # PG: the JSON insert
        plain = client.post("/api/v1/feedback", headers=auth, json={
            "kind": "binary", "response_id": a, "value": True, "user": "u8", "segment": DETAILED})
        assert ok.status_code == plain.status_code == 201, ok.text
        bad = client.post("/api/v1/feedback", headers=auth, json={
            "kind": "binary", "response_id": a, "value": True, "segment": {"style": 3}})
        assert bad.status_code == 422 and "segment" in bad.json()["field"]
        mail = client.post("/api/v1/feedback", headers=auth, json={
            "kind": "binary", "response_id": a, "value": True, "user": "ann@example.org"})
        assert mail.status_code == 422 and mail.json()["field"] == "user"
    with session_scope(db_url) as s:
        row = s.get(Feedback, ok.json()["id"])
        assert row is not None and (row.user_id, row.segment) == ("u7", CONCISE)
        row = s.get(Feedback, plain.json()["id"])
        assert row is not None and (row.user_id, row.segment) == ("u8", DETAILED)


def test_served_responses_log_user_and_segment(db_url: str, tiny_causal_dir: Path,
                                               tmp_path: Path) -> None:
    """The rollout server's log ("logged responses") keeps the pseudonymised user and the
    request body's ``segment_attrs``; feedback on the served response carries them too."""
    from tests.rollout.conftest import make_registry, start_canary

    from prefline.rollout.flags import pseudonym
    from prefline.store.rollout_models import ServedResponse

    canary = start_canary(make_registry(db_url, tiny_causal_dir, tmp_path), percent=50.0)
    auth = {"Authorization": f"Bearer {canary.key}"}
    with TestClient(create_app(db_url)) as client:
        chat = client.post("/v1/chat/completions", headers=auth, json={
            "model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
            "user": "u5", "segment_attrs": CONCISE})
        assert chat.status_code == 200, chat.text
        rid = chat.json()["response_id"]
        bad = client.post("/v1/chat/completions", headers=auth, json={
            "model": "chat", "messages": [{"role": "user", "content": "Hi"}],
            "segment_attrs": ["concise"]})
        assert bad.status_code == 422 and "segment_attrs" in bad.text
        fb = client.post("/api/v1/feedback", headers=auth, json={
            "kind": "binary", "response_id": rid, "value": True, "user": "u5",
            "segment": CONCISE})
        assert fb.status_code == 201, fb.text
    with session_scope(db_url) as s:
        row = s.scalar(select(ServedResponse).where(ServedResponse.response_id == rid))
        assert row is not None and row.user_hash == pseudonym("u5")
        assert row.segment_attrs == CONCISE
        label = s.get(Feedback, fb.json()["id"])
        assert label is not None and (label.user_id, label.segment) == ("u5", CONCISE)
