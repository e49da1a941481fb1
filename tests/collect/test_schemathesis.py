"""schemathesis generates requests from the OpenAPI spec: no input may cause a 5xx, and
every response must match its documented schema and status codes."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from prefline.collect import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def test_openapi_fuzz_finds_no_server_errors(sqlite_store: Any) -> None:
    app = create_app(sqlite_store.url)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    auth = {"Authorization": f"Bearer {sqlite_store.key}"}
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        # Bounded so the whole module stays within a few seconds on a shared 2-core box.
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=auth, checks=CHECKS)

        fuzz()
    assert "POST /api/v1/feedback/batch" in labels and "POST /api/v1/log" in labels
