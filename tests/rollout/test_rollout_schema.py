"""schemathesis over the rollout routes (the /v1 chat API and the rollout admin API): no
input may cause a 5xx, and responses must match their documented schema and codes."""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, status_code_conformance
from starlette.routing import Mount
from tests.collect.conftest import _login
from tests.rollout.conftest import Registry, start_canary

from prefline.collect import create_app

CHECKS = [not_a_server_error, status_code_conformance]


def _fuzz(schema: Any, headers: dict[str, str], wanted: str) -> list[str]:
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if wanted not in operation.path:
            continue
        labels.append(operation.label)

        @settings(max_examples=10, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        fuzz()
    return labels


def test_rollout_routes_fuzz_finds_no_server_errors(registry: Registry) -> None:
    canary = start_canary(registry, users=True)
    app = create_app(registry.url)
    auth = {"Authorization": f"Bearer {canary.key}"}
    chat = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "/v1")
    labels = _fuzz(schemathesis.openapi.from_asgi("/openapi.json", chat), auth, "/chat")
    assert labels == ["POST /chat/completions"]
    with TestClient(app) as client:  # as a logged-in admin, so the fuzz reaches the logic
        csrf = _login(client, "root")
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    admin = {"Cookie": cookie, "X-CSRF-Token": csrf}
    labels = _fuzz(schemathesis.openapi.from_asgi("/openapi.json", app), admin,
                   "/api/admin/rollout")
    assert len(labels) == 3
