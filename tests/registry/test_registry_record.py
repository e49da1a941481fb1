"""record(): an artifact and its typed inputs in one transaction, or nothing at all."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select

from prefline.base.errors import PreflineError
from prefline.base.stage import StageResult
from prefline.registry import (
    Ref,
    code_version,
    get_artifact,
    inputs_of,
    list_artifacts,
    record,
    record_result,
)
from prefline.store.context import Store
from prefline.store.db import session_scope
from prefline.store.models import Artifact, ArtifactInput, AuditLog


def _counts(url: str) -> tuple[int, int, int]:
    with session_scope(url) as s:
        return tuple(int(s.scalar(select(func.count()).select_from(t)) or 0)  # type: ignore[return-value]
                     for t in (Artifact, ArtifactInput, AuditLog))


def test_record_with_several_typed_inputs_reads_them_back(db_url: str, tmp_path: Path,
                                                          make_snapshot: Any) -> None:
    snap = make_snapshot(db_url)
    rm = record(db_url, "reward_model", tmp_path / "rm", config={"lr": 1e-4}, metrics=None,
                inputs=[Ref("snapshot", snapshot_id=snap), Ref("base_model", ref="minilm")],
                snapshot_hash="ab" * 32)
    inputs = (Ref("snapshot", snapshot_id=snap), Ref("base_model", ref="/models/tiny"),
              Ref("reward_model", artifact_id=rm), Ref("judge", ref="rules"),
              Ref("data", ref="cd" * 32))
    pol = record(Store.open(db_url), "policy", tmp_path / "pol", name="ppo",
                 config={"out": tmp_path / "pol", "beta": (0.1, 0.2)},
                 metrics={"kl": 0.5, "reward": math.nan}, inputs=inputs, actor="tester")
    assert inputs_of(pol, db_url) == inputs  # same roles, targets and order
    art = get_artifact(pol, db_url)
    assert art is not None and art.kind == "policy" and art.name == "ppo"
    assert art.path == str((tmp_path / "pol").resolve())
    # stored as plain JSON: Paths → str, tuples → lists, NaN → None
    assert art.config == {"out": str(tmp_path / "pol"), "beta": [0.1, 0.2]}
    assert art.metrics == {"kl": 0.5, "reward": None}
    assert art.code_version == code_version()
    assert [a.id for a in list_artifacts("policy", db_url)] == [pol]
    with session_scope(db_url) as s:
        entry = s.scalars(select(AuditLog).where(AuditLog.target == f"artifact:{pol}")).one()
    assert entry.actor == "tester" and entry.action == "artifact.register"
    assert entry.details is not None and len(entry.details["inputs"]) == 5
    assert entry.details["inputs"][2] == {"role": "reward_model", "artifact_id": rm,
                                          "snapshot_id": None, "ref": None}


@pytest.mark.parametrize(("bad", "message"), [
    (Ref("reward_model", artifact_id=999), r"input 1 \(reward_model\) names artifact 999"),
    (Ref("snapshot", snapshot_id=999), r"input 1 \(snapshot\) names snapshot 999"),
    ({"role": "judge", "ref": "rules"}, r"input 1 is a dict, expected a .*Ref"),
])
def test_a_missing_input_is_a_clear_error_and_nothing_is_written(
        sqlite_url: str, tmp_path: Path, make_snapshot: Any, bad: Any, message: str) -> None:
    snap = make_snapshot(sqlite_url)
    before = _counts(sqlite_url)
    with pytest.raises(PreflineError, match=message):
        record(sqlite_url, "policy", tmp_path / "p", config=None, metrics=None,
               inputs=[Ref("snapshot", snapshot_id=snap), bad])
    assert _counts(sqlite_url) == before


def test_inputs_of_an_unknown_artifact_is_a_clear_error(sqlite_url: str) -> None:
    with pytest.raises(PreflineError, match="no artifact with id 7"):
        inputs_of(7, sqlite_url)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    beta: float = 0.1
    out: Path = Path("run")


@dataclasses.dataclass
class ToyResult(StageResult):
    artifact_kind: ClassVar[str | None] = "policy"
    path: Path
    metrics: dict[str, Any]
    inputs: tuple[Ref, ...]
    snapshot_hash: str | None = None


def test_record_result_takes_kind_path_metrics_and_lineage_from_the_result(
        sqlite_url: str, tmp_path: Path, make_snapshot: Any) -> None:
    snap = make_snapshot(sqlite_url)
    result = ToyResult(tmp_path / "model", {"loss": 0.25},
                       (Ref("snapshot", snapshot_id=snap), Ref("base_model", ref="tiny")),
                       snapshot_hash="ab" * 32)
    art_id = record_result(sqlite_url, result, ToyConfig(), name="toy")
    art = get_artifact(art_id, sqlite_url)
    assert art is not None and art.kind == "policy" and art.name == "toy"
    assert art.config == {"beta": 0.1, "out": "run"} and art.metrics == {"loss": 0.25}
    assert art.snapshot_hash == "ab" * 32
    assert inputs_of(art_id, sqlite_url) == result.inputs


def test_record_result_refuses_a_result_that_is_not_an_artifact(sqlite_url: str) -> None:
    @dataclasses.dataclass
    class Report(StageResult):
        metrics: dict[str, Any]

    with pytest.raises(PreflineError, match="Report is not an artifact"):
        record_result(sqlite_url, Report({}), None)
