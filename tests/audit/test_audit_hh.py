"""The audit on the shared Anthropic HH sample (imported with the store's importer)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prefline.cli import main
from prefline.store.ingest import import_file
from prefline.store.snapshots import create_snapshot


def test_hh_audit_reports_length_bias_and_duplicates(hh_file: Path, sqlite_url: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """800 HH-harmless pairs imported with the store's importer: one annotator, so agreement
    is not defined; the chosen response is the longer one in 373 of 800 pairs (0.466);
    no two prompts are the same conversation, but 20 conversations reuse an opening."""
    import_file(hh_file, sqlite_url, format="hh")
    report = tmp_path / "hh.html"
    main(["audit", "--db", sqlite_url, "--json", "--report", str(report)])
    r = json.loads(capsys.readouterr().out)
    m = r["metrics"]
    assert r["scope"]["feedback"] == 800
    assert r["length_bias"]["chosen_longer"]["n"] == 800
    assert m["chosen_longer"] == pytest.approx(373 / 800, abs=1e-6)
    assert m["duplicates"] == 0 and m["exact_duplicates"] == 0
    assert m["opening_duplicates"] == 20
    assert m["alpha"] == "not defined: only one annotator"
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', report.read_text())
    # A snapshot of it (prompt-grouped hash split): no prompt leaks; a few held-out
    # conversations open with a question that also opens a train conversation.
    sid = create_snapshot(sqlite_url, "hh").id
    main(["audit", "--db", sqlite_url, "--snapshot", str(sid), "--json", "--fail-on", "leakage>0"])
    snap = json.loads(capsys.readouterr().out)
    assert snap["metrics"]["leakage"] == 0 and snap["checks"]["breached"] == []
    assert 0 <= snap["metrics"]["opening_leakage"] <= 20

