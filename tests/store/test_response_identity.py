"""One response identity across import, the ingest API and generation."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from prefline.collect.ingest import log_interaction
from prefline.collect.schemas import LogRequest
from prefline.store.db import open_store, session_scope
from prefline.store.ingest import import_file, response_hash
from prefline.store.models import Prompt, Response


def test_imported_and_api_logged_response_is_one_row(tmp_path: Path, db_url: str) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "Name a colour.", "chosen": "Blue.",
                                "rejected": "I cannot help."}) + "\n")
    import_file(data, db_url)
    engine = open_store(db_url)
    req = LogRequest.model_validate({"prompt": {"text": "Name a colour."},
                                     "responses": [{"text": "Blue."}, {"text": "Blue.", "model": "m1"}]})
    _, ids = log_interaction(engine, req)
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Prompt)) == 1
        # "Blue." without a model is the imported row; from model m1 it is a new response.
        assert s.scalar(select(func.count()).select_from(Response)) == 3
        texts = dict(s.execute(select(Response.id, Response.model)).all())
    assert texts[ids[0]] is None and texts[ids[1]] == "m1"
    assert response_hash("p", "t") != response_hash("p", "t", "m1")
