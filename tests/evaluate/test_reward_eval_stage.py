"""The ``eval reward`` stage and command: held-out splits, lineage, JSON keys, ensembles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prefline.base.progress import Reporter
from prefline.cli import main
from prefline.evaluate.reward import RESULT_FILE, RewardEvalConfig, run
from prefline.models.reward import RewardEnsemble, RewardModel
from prefline.store.context import Context, Store


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n: int = 30) -> list[dict[str, Any]]:
    return [{"prompt": f"question {i}?", "chosen": "long helpful reply " * (1 + i % 2),
             "rejected": "short", "tags": ["x" if i % 2 else "y"]} for i in range(n)]


def _ctx(db: str, run_dir: Path | None = None) -> Context:
    return Context(store=Store.open(db), run_dir=run_dir, progress=Reporter(False))


@pytest.fixture(scope="module")
def model_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return RewardModel.create(str(tiny_encoder_dir), max_length=64).save(
        tmp_path_factory.mktemp("rm") / "rm")


@pytest.fixture(scope="module")
def ensemble_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    members = [RewardModel.create(str(tiny_encoder_dir), max_length=64, seed=s) for s in (0, 1)]
    return RewardEnsemble(members, 1.5).save(tmp_path_factory.mktemp("ens") / "ens")


def test_eval_cli_json_keys_report_and_bad_model(model_dir: Path, tmp_path: Path,
                                                 sqlite_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = _write(tmp_path / "pairs.jsonl", _rows(12))
    main(["eval", "reward", "--model", str(model_dir), "--data", str(data), "--json",
          "--probes", "2", "--report", str(tmp_path / "rep.html"), "--db", sqlite_url,
          "--out", str(tmp_path / "ev")])
    out = json.loads(capsys.readouterr().out)
    # The keys the command printed before the stage contract are still at the top level.
    assert {"accuracy", "accuracy_ci", "ece", "n_pairs", "length_bias", "robustness",
            "model", "report"} <= set(out)
    assert out["n_pairs"] == 12 and out["split"] == "all" and out["artifact_id"] > 0
    assert (tmp_path / "rep.html").exists()
    assert json.loads((tmp_path / "ev" / RESULT_FILE).read_text())["n_pairs"] == 12
    with pytest.raises(SystemExit) as exc:
        main(["eval", "reward", "--model", str(tmp_path / "nope"), "--data", str(data),
              "--db", sqlite_url])
    assert exc.value.code == 2
    assert "not a saved reward model" in capsys.readouterr().err


def test_snapshot_test_split_and_lineage(model_dir: Path, tmp_path: Path,
                                         sqlite_url: str) -> None:
    from prefline.registry import Ref, inputs_of, record, record_result
    from prefline.store.ingest import import_file
    from prefline.store.snapshots import create_snapshot, snapshot_examples

    import_file(_write(tmp_path / "pairs.jsonl", _rows()), sqlite_url)
    snap = create_snapshot(sqlite_url, "v1", test_fraction=0.4)
    rm_id = record(sqlite_url, "reward_model", model_dir, config=None, metrics=None,
                   inputs=[Ref("snapshot", snapshot_id=snap.id)])
    cfg = RewardEvalConfig(model=str(model_dir), snapshot="v1", probes=0)
    result = run(cfg, _ctx(sqlite_url, tmp_path / "ev"))
    test = snapshot_examples(snap.id, "test", sqlite_url)
    assert result.split == "test" and result.metrics.n_pairs == len(test) > 0
    assert result.counts.used == {"pairwise": len(test)}
    assert result.inputs == (Ref("reward_model", artifact_id=rm_id),
                             Ref("snapshot", snapshot_id=snap.id))
    ev_id = record_result(sqlite_url, result, cfg)
    assert [r.role for r in inputs_of(ev_id, db=sqlite_url)] == ["reward_model", "snapshot"]
    assert run(RewardEvalConfig(model=str(model_dir), snapshot="v1", split="all", probes=0),
               _ctx(sqlite_url)).metrics.n_pairs == 30


def test_file_test_split_is_the_one_training_held_out(tiny_encoder_dir: Path, tmp_path: Path,
                                                      sqlite_url: str) -> None:
    from prefline.base import config
    from prefline.train import reward as train_reward

    data = _write(tmp_path / "pairs.jsonl", _rows(40))
    cfg = config.build(train_reward.RewardConfig, {
        "data": str(data), "model": str(tiny_encoder_dir), "max_length": 48, "max_steps": 1,
        "ensemble": 2, "test_fraction": 0.3, "val_fraction": 0.2, "seed": 3})
    trained = train_reward.run(cfg, _ctx(sqlite_url, tmp_path / "rm"))
    for split in ("test", "val"):
        got = run(RewardEvalConfig(model=str(trained.path), data=str(data), split=split,
                                   probes=0), _ctx(sqlite_url))
        assert got.metrics.n_pairs == trained.splits[split] > 0
        assert got.inputs[0].ref == str(trained.path.resolve())


def test_unregistered_model_is_named_by_its_path(ensemble_dir: Path, tmp_path: Path,
                                                 sqlite_url: str) -> None:
    data = _write(tmp_path / "pairs.jsonl", _rows(8))
    result = run(RewardEvalConfig(model=str(ensemble_dir), data=str(data), probes=0),
                 _ctx(sqlite_url))
    assert result.inputs[0].ref == str(ensemble_dir.resolve()) and result.path is None
    assert result.metrics.temperature == 1.5  # the ensemble's own, not a member's


def test_eval_policy_accepts_a_reward_ensemble(tiny_causal_dir: Path, ensemble_dir: Path,
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('"What is 3 times 4?"\n"Name a colour."\n')
    main(["eval", "policy", "--policy", str(tiny_causal_dir), "--baseline", str(tiny_causal_dir),
          "--prompts", str(prompts), "--max-new-tokens", "4", "--reward", str(ensemble_dir),
          "--json"])
    out = json.loads(capsys.readouterr().out)
    assert 0.0 <= out["proxy"]["win_rate"] <= 1.0 and "mean_reward_policy" in out["proxy"]


def test_reward_eval_scores_on_the_contexts_device(ensemble_dir: Path, tmp_path: Path,
                                                   sqlite_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: eval reward honours ``ctx.device``: every ensemble member is placed there
    (the ``meta`` device stands in for a GPU in the unit check; the stage runs on the CPU)."""
    import torch

    import prefline.evaluate.reward as stage
    from prefline.models.reward import load_reward_model, place_reward_model

    seen: list[torch.device] = []

    def spy(model: Any, device: torch.device) -> Any:
        seen.append(device)
        out = place_reward_model(model, device)
        assert all(p.device == device for m in out.members for p in m.parameters())
        return out

    monkeypatch.setattr(stage, "place_reward_model", spy)
    data = _write(tmp_path / "pairs.jsonl", _rows(6))
    ctx = Context(store=Store.open(sqlite_url), device="cpu", progress=Reporter(False))
    assert run(RewardEvalConfig(model=str(ensemble_dir), data=str(data), probes=0),
               ctx).metrics.n_pairs == 6
    assert seen == [torch.device("cpu")]
    meta = place_reward_model(load_reward_model(ensemble_dir), torch.device("meta"))
    assert isinstance(meta, RewardEnsemble)
    assert all(p.device.type == "meta" for m in meta.members for p in m.parameters())
