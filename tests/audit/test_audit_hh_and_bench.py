"""The audit on the shared Anthropic HH sample, and the audit benchmark at small scale."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prefline.cli import main


def test_hh_audit_reports_length_bias_and_duplicates(hh_file: Path, sqlite_url: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """800 HH-harmless pairs imported with the store's importer: one annotator, so agreement
    is not defined; the chosen response is the longer one in 373 of 800 pairs (0.466);
    no two prompts are the same conversation, but 20 conversations reuse an opening."""
    ingest = pytest.importorskip("prefline.store.ingest", reason="the importer has not landed")
    if not hasattr(ingest, "import_file"):
        pytest.skip("prefline.store.ingest.import_file is not available")
    ingest.import_file(hh_file, sqlite_url, format="hh")
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
    from prefline.store.snapshots import create_snapshot

    sid = create_snapshot(sqlite_url, "hh").id
    main(["audit", "--db", sqlite_url, "--snapshot", str(sid), "--json", "--fail-on", "leakage>0"])
    snap = json.loads(capsys.readouterr().out)
    assert snap["metrics"]["leakage"] == 0 and snap["checks"]["breached"] == []
    assert 0 <= snap["metrics"]["opening_leakage"] <= 20


def test_bench_audit_small(capsys: pytest.CaptureFixture[str]) -> None:
    """``prefline bench audit --n 3000 --json``: the synthetic store shows the biases it was
    built with (left +0.05 and longer +0.1 in P(win)) and the snapshot's planted leaks."""
    main(["bench", "audit", "--n", "3000", "--repeat", "1", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert r["n_feedback"] == 3000 and r["within_budget"]
    assert 0.5 < r["headline"]["position_bias"] < 0.6
    assert 0.55 < r["headline"]["length_bias"] < 0.7
    assert r["headline"]["duplicates"] >= 7  # 1% exact copies of 750 prompts
    assert r["snapshot_leakage"] > 0
