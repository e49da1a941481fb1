"""The ingest benchmark runs end to end on both backends (at a tiny size)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefline.cli import main
from prefline.formats.load import load_pairs
from prefline.store.bench_ingest import generate


def test_generated_records_are_valid_pairs(tmp_path: Path) -> None:
    pairs = load_pairs(generate(tmp_path / "g.jsonl", 50))
    assert len(pairs) == 50 and len({p.prompt_key for p in pairs}) == 25


def test_bench_ingest_json_reports_both_backends(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["bench", "ingest", "--n", "300", "--pg-url", pg_url, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 300
    assert result["sqlite_records_per_s"] > 0 and result["postgres_records_per_s"] > 0

