"""The audit's JSON and HTML name what was audited: the store, the snapshot (id, name,
content hash) or the whole store, and the AI judges whose labels are in it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefline.cli import main
from prefline.store.snapshots import create_snapshot


def test_report_names_the_snapshot_and_the_judges(store, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(6):
        pid, (a, b) = store.prompt_with(2, text=f"question {i} about rivers")
        store.pairwise("h1", pid, a, b, "a")
        store.feedback([{"who": "judge:principles:abc123", "who_kind": "ai_judge",
                         "kind": "pairwise", "prompt_id": pid, "response_a_id": a,
                         "response_b_id": b, "choice": "a"}])
    snap = create_snapshot(store.url, "rivers-v1", test_fraction=0.3)
    report = tmp_path / "audit.html"
    main(["audit", "--db", store.url, "--snapshot", "rivers-v1", "--json", "--report",
          str(report)])
    scope = json.loads(capsys.readouterr().out)["scope"]
    assert (scope["snapshot"], scope["snapshot_name"], scope["snapshot_hash"]) == (
        snap.id, "rivers-v1", snap.content_hash)
    html = report.read_text()
    for text in (f"snapshot #{snap.id} <code>rivers-v1</code>", snap.content_hash,
                 "<code>judge:principles:abc123</code>", store.url.split("///")[-1]):
        assert text in html, text

    main(["audit", "--db", store.url, "--json", "--report", str(report)])
    scope = json.loads(capsys.readouterr().out)["scope"]
    assert scope["snapshot"] is None and scope["judges"] == ["judge:principles:abc123"]
    assert "the whole store (no snapshot)" in report.read_text()
