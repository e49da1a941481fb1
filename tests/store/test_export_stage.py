"""The export stage: rows per task, rankings expanded to pairs for dpo/reward, and the
used/ignored counts per snapshot item kind."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.store.context import Context, Store
from prefline.store.export_stage import ExportConfig, ExportResult, run
from prefline.store.snapshot_config import SnapshotConfig
from prefline.store.snapshots import run as snapshot


def export(url: str, out: Path, **values: object) -> ExportResult:
    cfg = config.build(ExportConfig, {"out": str(out), **values}, command="export")
    return run(cfg, Context(store=Store.open(url)))


@pytest.fixture
def store(sqlite_url: str, mixed_store: Callable[[str], str]) -> str:
    url = mixed_store(sqlite_url)
    kinds = ("pairwise", "ranking", "rating", "binary", "implicit")
    snapshot(SnapshotConfig(name="all", kinds=kinds), Context(store=Store.open(url)))
    return url


def rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dpo_export_expands_rankings_and_says_what_it_left_out(store: str, tmp_path: Path) -> None:
    out = tmp_path / "dpo.jsonl"
    result = export(store, out, task="dpo", snapshot="all", style="standard")
    # 2 judged pairs + the 3 pairs of one 3-way ranking (r3 > r1 > r2, best first).
    assert result.rows == 5 == len(rows(out)) and result.pairs_from_rankings == 3
    assert {(r["chosen"], r["rejected"]) for r in rows(out) if r["prompt"] == "p4"} == \
        {("r3", "r1"), ("r3", "r2"), ("r1", "r2")}
    assert result.used_by_kind == {"pairwise": 2, "ranking": 1}
    assert result.ignored_by_kind == {"binary": {"the dpo task has no use for binary items": 6},
                                      "rating": {"the dpo task has no use for rating items": 1}}
    assert result.to_json()["snapshot_hash"] == result.snapshot_hash


def test_kto_export_uses_thumbs_implicit_labels_and_unpaired_pairs(store: str,
                                                                   tmp_path: Path) -> None:
    result = export(store, tmp_path / "kto.jsonl", task="kto", snapshot="all")
    assert result.used_by_kind == {"pairwise": 2, "binary": 6}
    assert result.rows == 2 * 2 + 6 and result.pairs_from_rankings == 0
    assert "ranking" in result.ignored_by_kind  # unpairing a ranking would contradict itself


def test_nothing_usable_and_bad_settings_fail_clearly(store: str,
                                                      tmp_path: Path) -> None:
    snapshot(SnapshotConfig(name="pairs", kinds=("pairwise",)), Context(store=Store.open(store)))
    out = tmp_path / "r.jsonl"
    with pytest.raises(PreflineError, match="no all items usable for task 'ranking'") as err:
        export(store, out, task="ranking", snapshot="pairs")
    assert err.value.field == "task" and not out.exists()
    with pytest.raises(PreflineError, match="missing required setting"):
        config.build(ExportConfig, {"out": "x.jsonl"})
    with pytest.raises(PreflineError) as err:
        config.build(ExportConfig, {"out": "x.jsonl", "task": "sft"})
    assert err.value.field == "task"
