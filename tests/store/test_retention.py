"""``prefline store prune`` (issue 14 item 8): feedback older than its source's retention
period goes, with the snapshot items copied from it and the prompts and responses nothing
else uses; a dry run counts exactly and changes nothing; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from tests.cli_runner import run_cli
from tests.store.forget_seed import search_everywhere

from prefline.base.errors import PreflineError
from prefline.base.stage import Ref
from prefline.collect import create_app
from prefline.collect.auth import create_api_key
from prefline.registry import record
from prefline.store.db import open_store, session_scope, store_stats
from prefline.store.ingest import import_file
from prefline.store.models import Artifact, AuditLog, Feedback, Snapshot, utcnow
from prefline.store.retention import PruneConfig, period
from prefline.store.rollout_models import ServedResponse
from prefline.store.snapshots import create_snapshot

OLD = ("Old prompt about lighthouses", "Old chosen lantern", "Old rejected fogbank")
FRESH = ("Fresh prompt about orchards", "Fresh chosen pippin", "Fresh rejected bramley")
SHARED_PROMPT = "Prompt asked long ago and again today"
API = ("Chat prompt about kestrels", "Chat answer hover", "Chat answer stoop")
SERVED_OLD = ("Served question about herons", "Served answer about herons")
SERVED_NEW = ("Served question about wrens", "Served answer about wrens")


def _pair(prompt: str, chosen: str, rejected: str) -> dict[str, str]:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _seed(url: str, tmp: Path) -> tuple[int, int]:
    """Old and fresh imports (one prompt in both), an API label; old rows backdated."""
    open_store(url)
    for source, rows in (("old-import", [_pair(*OLD), _pair(SHARED_PROMPT, "then a", "then b")]),
                         ("fresh-import", [_pair(*FRESH), _pair(SHARED_PROMPT, "now a", "now b")])):
        path = tmp / f"{source}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        import_file(path, url, source=source)
    with session_scope(url) as s:
        key = create_api_key(s, "prod")
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(url)) as client:
        ids = client.post("/api/v1/log", headers=auth, json={"prompt": {"text": API[0]}, "responses": [
            {"text": API[1], "model": "m"}, {"text": API[2], "model": "m"}]}).json()["response_ids"]
        assert client.post("/api/v1/feedback", headers=auth, json={
            "kind": "pairwise", "response_a_id": ids[0], "response_b_id": ids[1],
            "choice": "a"}).status_code == 201
        served = [client.post("/api/v1/log", headers=auth, json={
            "prompt": {"text": prompt}, "responses": [{"text": answer, "model": "m"}]},
        ).json()["response_ids"][0] for prompt, answer in (SERVED_OLD, SERVED_NEW)]
    snap = create_snapshot(url, "before-prune").id
    art = record(url, "reward_model", tmp / "rm", config=None, metrics=None,
                 inputs=[Ref("snapshot", snapshot_id=snap)])
    now = utcnow()
    with session_scope(url) as s:
        for source, days in (("old-import", 400), ("fresh-import", 10), ("api:prod", 40)):
            s.execute(update(Feedback).where(Feedback.source == source)
                      .values(created_at=now - dt.timedelta(days=days)))
        for rid, days in zip(served, (40, 2), strict=True):  # chats served by rollout
            s.add(ServedResponse(request_id=f"r{rid}", response_id=rid, artifact_id=art,
                                 model_version="v1", flag="chat", arm="production",
                                 user_hash="ab" * 32, latency_ms=1.0,
                                 created_at=now - dt.timedelta(days=days)))
    return snap, art


def test_prune_deletes_expired_feedback_and_what_only_it_kept(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap, art = _seed(db_url, tmp_path)
    engine = open_store(db_url)
    config = tmp_path / "retention.toml"
    config.write_text('default_days = 3650\n[retention_days]\n"old-import" = 365\n"api:*" = 30\n'
                      '"served:*" = 30\n')
    before = store_stats(db_url)
    code, out, err = run_cli(["store", "prune", "--config", str(config), "--dry-run",
                              "--db", db_url, "--json"], capsys)
    assert code == 0, err
    dry = json.loads(out)
    assert dry["dry_run"] and store_stats(db_url) == before  # counted, nothing changed
    code, out, err = run_cli(["store", "prune", "--config", str(config), "--db", db_url], capsys)
    assert code == 0, err
    assert "deleted: " in out and "old-import: 2 feedback rows older than" in out
    assert "pruning feedback" in err  # the progress bar's line (stderr is not a terminal)
    gone = set(OLD) | set(API) | set(SERVED_OLD) | {"then a", "then b"}
    assert search_everywhere(engine, gone) == []
    if db_url.startswith("sqlite"):  # not even in the file's free pages or its WAL
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
        assert [t for t in gone if t.encode() in raw] == []
    kept = set(FRESH) | set(SERVED_NEW) | {SHARED_PROMPT, "now a", "now b"}
    assert {n for _, _, n in search_everywhere(engine, kept)} == kept
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 2
        assert s.get(Snapshot, snap).contains_forgotten_data  # type: ignore[union-attr]
        assert s.get(Artifact, art).contains_forgotten_data  # type: ignore[union-attr]
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "store.prune")).one()
    counts = entry.details["counts"]
    assert counts == dry["counts"]  # the dry run's counts were exact
    assert counts["feedback"] == 3 and counts["served_responses"] == 1
    assert counts["prompts"] == 3 and counts["responses"] == 7 and counts["snapshot_items"] == 3
    assert entry.details["expired_by_source"] == {"api:prod": 1, "old-import": 2,
                                                  "served:chat": 1}
    # Nothing is past its period any more: a second prune deletes nothing.
    code, out, _ = run_cli(["store", "prune", "--config", str(config), "--db", db_url], capsys)
    assert code == 0 and "deleted: nothing" in out


def test_retention_periods_by_name_pattern_and_default() -> None:
    cfg = PruneConfig(retention_days={"api:*": 30, "api:prod*": 7, "hh.jsonl": 365},
                      default_days=90)
    assert period(cfg, "hh.jsonl") == 365
    assert period(cfg, "api:staging") == 30
    assert period(cfg, "api:prod") == 7  # the longest matching pattern wins
    assert period(cfg, "campaign:3") == 90 and period(cfg, None) == 90
    assert period(PruneConfig(retention_days={"a": 1}), "b") is None  # kept forever
    with pytest.raises(PreflineError, match="no retention period"):
        PruneConfig()
    with pytest.raises(PreflineError, match="retention_days.a.*positive"):
        PruneConfig(retention_days={"a": 0})
