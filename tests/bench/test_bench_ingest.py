"""``prefline bench ingest``: generated records into fresh SQLite and PostgreSQL stores."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from prefline.bench.ingest import generate
from prefline.formats.load import load_pairs

sys.path.insert(0, str(Path(__file__).parent))
from bench_smoke import check_shape, run_json  # noqa: E402


def test_generated_records_are_valid_pairs(tmp_path: Path) -> None:
    pairs = load_pairs(generate(tmp_path / "g.jsonl", 50))
    assert len(pairs) == 50 and len({p.prompt_key for p in pairs}) == 25


def test_bench_ingest_reports_both_backends(pg_url: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(capsys, ["bench", "ingest", "--n", "300", "--pg-url", pg_url, "--reps", "1"])
    check_shape(r, ["prefline"])
    m = r["sides"]["prefline"]["metrics"]
    assert m["sqlite.records_per_s"]["median"] > 0 and m["postgres.records_per_s"]["median"] > 0
    assert m["postgres.server_cpu_s"]["median"] >= 0
    assert set(r["targets"]) == {"sqlite.records_per_s", "postgres.records_per_s"}
    assert r["comparisons"] == {}
