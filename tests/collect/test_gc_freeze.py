"""The served app keeps its start-up heap out of the cyclic GC (collect/app.py)."""

from __future__ import annotations

import gc
from pathlib import Path

from fastapi.testclient import TestClient

from prefline.collect.app import create_app


def test_startup_heap_is_frozen_while_serving_and_given_back(tmp_path: Path) -> None:
    app = create_app(str(tmp_path / "store.db"))
    before = gc.get_freeze_count()
    with TestClient(app) as client:
        # FastAPI, pydantic, SQLAlchemy and the templates: far more than a handful.
        assert gc.get_freeze_count() > before + 10_000
        assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == before
