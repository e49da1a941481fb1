"""SIGKILL of ``prefline serve`` mid-canary: every acknowledged chat response is in the
log and every acknowledged feedback event is stored; the arms and flags survive the
restart and each user keeps their arm. The arms run on a scripted upstream (generation
content does not matter here), which also exercises ``--upstream``."""

from __future__ import annotations

import contextlib
import threading
import time

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from tests.rollout.conftest import Registry, start_canary
from tests.rollout.simulate import Population, uvicorn_thread

from prefline.collect import create_app
from prefline.collect.loadtest import Server
from prefline.rollout import actions
from prefline.rollout.flags import pseudonym
from prefline.store.db import normalise_url, session_scope
from prefline.store.models import Feedback, Response
from prefline.store.rollout_models import ServedResponse


def scripted_upstream() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def complete(body: dict[str, object]) -> dict[str, object]:
        return {"choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": f"scripted {body['model']}"}}]}

    return app


def test_sigkill_mid_canary_loses_nothing_acknowledged(registry: Registry) -> None:
    url = normalise_url(registry.url)
    canary = start_canary(registry, percent=50.0, guardrails={"auto_rollback": False})
    users = Population(p_up={"production": 0.5, "candidate": 0.5},
                       p_regen={"production": 0.2, "candidate": 0.2})
    with uvicorn_thread(scripted_upstream()) as upstream:
        args = ("--upstream", f"{canary.prod}={upstream}/v1",
                "--upstream", f"{canary.cand}={upstream}/v1")
        server = Server(url, args=args).start()
        base = f"http://127.0.0.1:{server.port}"
        stop = threading.Event()

        def drive() -> None:
            # the server dies under it: whatever was acknowledged before is recorded
            with contextlib.suppress(httpx.HTTPError, AssertionError, ValueError):
                users.run(base, canary.key, 100_000, stop=lambda i: stop.is_set())

        thread = threading.Thread(target=drive, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 90
            while len(users.acked) < 30:
                assert time.monotonic() < deadline and thread.is_alive(), users.statuses
                time.sleep(0.02)
            server.kill()
        finally:
            stop.set()
            server.kill()
        thread.join(30)
        acked, feedback = list(users.acked), list(users.feedback_ids)
        assert acked and feedback
        with session_scope(url) as s:
            rows = {r.request_id: r for r in s.scalars(select(ServedResponse))}
            for body in acked:
                row = rows[str(body["id"]).removeprefix("chatcmpl-")]
                assert row.response_id == body["response_id"] and row.arm == body["arm"]
                text = s.get(Response, row.response_id).text  # type: ignore[union-attr]
                assert text == body["choices"][0]["message"]["content"]
            stored = set(s.scalars(select(Feedback.id).where(Feedback.id.in_(feedback))))
        assert stored == set(feedback)
        # restart (a fresh server on the same store, here in this process): the flag and
        # arms are as they were, and users keep their arm
        app = create_app(url)
        app.state.collect.extra["upstreams"] = {canary.prod: f"{upstream}/v1",
                                                canary.cand: f"{upstream}/v1"}
        flag = actions.status(url)[0]
        assert (flag["percent"], flag["candidate"]["id"], flag["production"]["id"]) == (
            50.0, canary.cand, canary.prod)
        with uvicorn_thread(app) as again_base, httpx.Client(
                base_url=again_base, timeout=60,
                headers={"Authorization": f"Bearer {canary.key}"}) as http:
            for body in acked[:10]:
                user_hash = rows[str(body["id"]).removeprefix("chatcmpl-")].user_hash
                user = next(f"user-{i}" for i in range(users.n_users)
                            if pseudonym(f"user-{i}") == user_hash)
                again = http.post("/v1/chat/completions", json={
                    "model": "chat", "user": user,
                    "messages": [{"role": "user", "content": "again"}]}).json()
                assert again["arm"] == body["arm"]
