"""A store with two end users' data (import and the ingest API), an annotator account with
campaign labels, snapshots and artifacts built on it; and a search of every table and
column for strings (tests/store/test_forget.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select
from sqlalchemy.engine import Engine

from prefline.base.privacy import pseudonym
from prefline.base.stage import Ref
from prefline.collect import create_app
from prefline.collect.auth import create_api_key, create_user
from prefline.collect.campaigns import Selection, create_campaign, next_assignment, submit_label
from prefline.collect.labels import parse_label
from prefline.registry import record
from prefline.store.collect_models import Campaign, User
from prefline.store.consent_models import Consent
from prefline.store.db import audit, open_store, session_scope
from prefline.store.ingest import import_file
from prefline.store.models import Feedback, Response
from prefline.store.rollout_models import ServedResponse
from prefline.store.snapshot_config import Filters
from prefline.store.snapshots import create_snapshot

PASSWORD = "correct horse battery"
A, B, CAROL = "zq-alpha-7731", "kb-bravo-2290", "carol-annot-5518"
SHARED = {"prompt": "Shared prompt both users saw", "chosen": "Shared answer long",
          "rejected": "Shared answer short"}
# The distinctive strings of each user: after forgetting A none of A's may remain anywhere.
A_TEXTS = ("Zebra quartz prompt alpha", "Alpha chosen xylophone", "Alpha rejected marmalade",
           "Alpha logged question quokka", "Alpha served answer walrus",
           "Alpha served answer narwhal", "Alpha rationale prefers the walrus")
B_TEXTS = ("Bravo prompt pelican", "Bravo chosen tamarind", "Bravo rejected gooseberry",
           "Bravo logged question ibis", "Bravo served answer heron",
           "Bravo served answer egret", "Bravo rationale prefers the heron")


@dataclass
class Seeded:
    url: str
    snapshot_all: int
    snapshot_bravo: int
    reward_model: int
    policy: int
    unrelated: int
    b_feedback: int


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _import(url: str, tmp: Path) -> None:
    a_pair = {"prompt": A_TEXTS[0], "chosen": A_TEXTS[1], "rejected": A_TEXTS[2]}
    b_pair = {"prompt": B_TEXTS[0], "chosen": B_TEXTS[1], "rejected": B_TEXTS[2]}
    import_file(_jsonl(tmp / "mixed.jsonl", [
        {**a_pair, "user": A, "segment": {"style": "concise"}},
        {**SHARED, "user": A, "segment": {"style": "concise"}},
        {**SHARED, "user": B, "segment": {"style": "detailed"}},
    ]), url, source="mixed")
    import_file(_jsonl(tmp / "bravo.jsonl", [{**b_pair, "user": B}]), url, source="bravo")


def _api(url: str) -> None:
    """Each user's chat logged and judged through the ingest API (with a rationale)."""
    with session_scope(url) as s:
        key = create_api_key(s, "prod")
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(url)) as client:
        for user, texts, models in ((A, A_TEXTS, ("m1", "m2")), (B, B_TEXTS, ("m3", "m4"))):
            logged = client.post("/api/v1/log", headers=auth, json={
                "prompt": {"text": texts[3]}, "responses": [
                    {"text": texts[4], "model": models[0]}, {"text": texts[5], "model": models[1]}]})
            assert logged.status_code == 201, logged.text
            ra, rb = logged.json()["response_ids"]
            fb = client.post("/api/v1/feedback", headers=auth, json={
                "kind": "pairwise", "response_a_id": ra, "response_b_id": rb, "choice": "a",
                "user": user, "segment": {"style": "concise"}, "rationale": texts[6]})
            assert fb.status_code == 201, fb.text


def _carol_labels(url: str) -> None:
    """An annotator account that labels A's chat in a campaign (with a rationale)."""
    with session_scope(url) as s:
        create_user(s, "root", PASSWORD, role="admin")
        create_user(s, CAROL, PASSWORD)
        create_campaign(s, "c1", "pairwise", [], selection=Selection(models=("m1", "m2")))
    with session_scope(url) as s:
        user = s.scalar(select(User).where(User.username == CAROL))
        campaign = s.scalar(select(Campaign).where(Campaign.name == "c1"))
        assert user is not None and campaign is not None
        job = next_assignment(s, campaign, user)
        assert job is not None
        submit_label(s, job, user, parse_label(campaign, job, {
            "choice": "left", "strength": "clear", "rationale": f"label by {CAROL} on tuesday"}))


def _consent(url: str) -> None:
    with session_scope(url) as s:
        for user in (A, B):
            s.add(Consent(user_id=user, purpose="training", actor="cli"))
            audit(s, "cli", "consent.set", f"user:{user}", purpose="training")


def _telemetry(url: str, artifact: int) -> None:
    """A served chat per user (rollout's log keeps the user id's sha256)."""
    with session_scope(url) as s:
        for user, texts in ((A, A_TEXTS), (B, B_TEXTS)):
            response_id = s.scalar(select(_response_id(texts[4])))
            s.add(ServedResponse(request_id=f"req-{user}", response_id=response_id,
                                 artifact_id=artifact, model_version="v1", flag="chat",
                                 arm="production", user_hash=pseudonym(user), latency_ms=1.0))


def _response_id(text: str) -> Any:
    return select(Response.id).where(Response.text == text).scalar_subquery()


def seed(url: str, tmp: Path) -> Seeded:
    open_store(url)
    _import(url, tmp)
    _api(url)
    _carol_labels(url)
    _consent(url)
    everything = create_snapshot(url, "all").id
    bravo = create_snapshot(url, "bravo-only", filters=Filters(source="bravo")).id
    rm = record(url, "reward_model", tmp / "rm", config=None, metrics=None,
                inputs=[Ref("snapshot", snapshot_id=everything)])
    policy = record(url, "policy", tmp / "policy", config=None, metrics=None,
                    inputs=[Ref("reward_model", artifact_id=rm), Ref("base_model", ref="tiny")])
    # Built without A's data, but its metrics name A (a per-user figure): the id must go.
    unrelated = record(url, "reward_model", tmp / "rm-b", config=None,
                       metrics={"accuracy_by_user": {A: 0.9, B: 0.8}},
                       inputs=[Ref("snapshot", snapshot_id=bravo)])
    _telemetry(url, unrelated)
    with session_scope(url) as s:
        n_b = len(s.scalars(select(Feedback.id).where(Feedback.user_id == B)).all())
    return Seeded(url, everything, bravo, rm, policy, unrelated, n_b)


def search_everywhere(engine: Engine, needles: set[str]) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every needle found in any value of any column of any
    table (JSON values as their text, escaped and not), by reflecting the live schema."""
    meta = MetaData()
    meta.reflect(engine)
    hits = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(table.select()).mappings():
                for column, value in row.items():
                    text = _as_text(value)
                    hits += [(table.name, column, n) for n in needles if n in text]
    return hits


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value) + json.dumps(value, ensure_ascii=False)
    return str(value)
