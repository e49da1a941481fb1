"""The canary on a real server (uvicorn on loopback), with simulated users of known
preference: a worse candidate is rolled back automatically within a bounded number of
requests while production keeps serving; a better one is promoted."""

from __future__ import annotations

from sqlalchemy import select
from tests.rollout.conftest import Registry, start_canary
from tests.rollout.simulate import Population, uvicorn_thread

from prefline.collect import create_app
from prefline.store.db import session_scope
from prefline.store.models import Artifact, AuditLog

RAILS = {"min_feedback": 10, "every": 5, "alpha": 0.05}
N_MAX = 300  # the bound: with these rates the decision needs ~30-60 feedbacks per arm


def _status(url: str, aid: int) -> str:
    with session_scope(url) as s:
        return s.get(Artifact, aid).status  # type: ignore[union-attr]


def test_worse_candidate_rolled_back_automatically(registry: Registry) -> None:
    canary = start_canary(registry, percent=50.0, guardrails=RAILS)
    users = Population(p_up={"production": 0.9, "candidate": 0.1})
    url = registry.url
    with uvicorn_thread(create_app(url)) as base:
        sent = users.run(base, canary.key, N_MAX,
                         stop=lambda i: i % 10 == 0 and _status(url, canary.cand) != "canary")
        assert _status(url, canary.cand) == "rolled_back", users.served
        assert sent < N_MAX
        before = users.served["candidate"]
        users.run(base, canary.key, 20, stop=lambda i: False)
    assert users.served["candidate"] == before  # nobody sees the candidate any more
    # production was never touched: every request to it succeeded, it is still production
    assert {k for k in users.statuses if k[0] == "production"} == {("production", 200)}
    assert _status(url, canary.prod) == "production"
    with session_scope(url) as s:
        row = s.scalar(select(AuditLog).where(AuditLog.action == "lifecycle.rolled_back"))
        assert row is not None and row.actor == "guardrail"
        assert "thumbs_up" in row.details["reason"]  # type: ignore[index]


def test_better_candidate_promoted(registry: Registry) -> None:
    canary = start_canary(registry, percent=50.0, guardrails={**RAILS, "auto_promote": True})
    users = Population(p_up={"production": 0.1, "candidate": 0.9})
    url = registry.url
    with uvicorn_thread(create_app(url)) as base:
        sent = users.run(base, canary.key, N_MAX,
                         stop=lambda i: i % 10 == 0 and _status(url, canary.cand) != "canary")
    assert sent < N_MAX
    assert (_status(url, canary.cand), _status(url, canary.prod)) == ("production", "retired")
    assert set(users.statuses.values()) and all(code == 200 for _, code in users.statuses)
