"""Fixtures for the store tests: a store holding every kind of feedback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prefline.collect.ingest import FeedbackWriter, log_interaction
from prefline.collect.schemas import ImplicitEvent, LogRequest
from prefline.formats.jsonl import write_jsonl
from prefline.store.db import open_store
from prefline.store.ingest import import_file

EXPLICIT: list[dict[str, Any]] = [
    {"prompt": "p", "chosen": "good", "rejected": "bad", "annotator": "h1"},
    {"prompt": "p", "chosen": "good", "rejected": "bad", "annotator": "h2"},
    {"prompt": "p2", "chosen": "x", "rejected": "y", "annotator": "h1"},
    {"prompt": "p", "response": "good", "scores": {"helpful": 4}, "annotator": "h1"},
    {"prompt": "p", "response": "good", "scores": {"helpful": 2}, "annotator": "h2"},
    {"prompt": "p3", "completion": "thumb up", "label": True, "annotator": "h1"},
    {"prompt": "p3", "completion": "meh", "label": False, "annotator": "h1"},
    {"prompt": "p3", "completion": "split", "label": True, "annotator": "h1"},  # 1-1: no label
    {"prompt": "p3", "completion": "split", "label": False, "annotator": "h2"},
    {"prompt": "p4", "responses": ["r1", "r2", "r3"], "order": [2, 0, 1], "annotator": "h1"},
]
# (signal, response text, value) sent through the production ingest API, one response each.
IMPLICIT = [("regenerate", "first try", 1.0), ("copy", "copied", 1.0),
            ("dwell_ms", "read long", 45000.0), ("dwell_ms", "read short", 2000.0),
            ("click", "clicked", 1.0), ("edit", "edited", 1.0)]


@pytest.fixture
def mixed_store(tmp_path: Path) -> Callable[[str], str]:
    """Fills the store at a URL with pairwise votes, ratings, thumbs and a ranking imported
    from a file, plus one implicit signal per response of a production chat, logged
    through the ingest API; returns the URL."""

    def fill(url: str) -> str:
        import_file(write_jsonl(tmp_path / "explicit.jsonl", EXPLICIT), url)
        engine = open_store(url)
        req = LogRequest.model_validate({"prompt": {"text": "chat"}, "responses": [
            {"text": text, "model": "m"} for _, text, _ in IMPLICIT]})
        _, rids = log_interaction(engine, req)
        FeedbackWriter(engine).write([
            ImplicitEvent.model_validate({"kind": "implicit", "response_id": rid,
                                          "signal": signal, "value": value})
            for (signal, _, value), rid in zip(IMPLICIT, rids, strict=True)], "app")
        return url

    return fill
