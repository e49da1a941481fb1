"""--report-to: a real training run and a real evaluation read back from TensorBoard event
files (tensorboard's own reader) and from a local MLflow file store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from prefline.base.errors import PreflineError
from prefline.cli import main
from prefline.train.train_config import TrainConfig


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "yes " * (1 + i % 3),
                                        "rejected": "no"}) + "\n" for i in range(12)))
    return data


def _train(tmp_path: Path, model: Path, report_to: str, out: str) -> Path:
    main(["train", "dpo", "--data", str(_data(tmp_path)), "--model", str(model),
          "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "--out", str(tmp_path / out),
          "--report-to", report_to, "max_steps=3", "batch_size=2", "val_fraction=0.25",
          "test_fraction=0.25", "eval_every=2", "precision=fp32"])
    return tmp_path / out


def test_tensorboard_event_files_hold_steps_evals_config_and_paths(
        tmp_path: Path, tiny_causal_dir: Path) -> None:
    run = _train(tmp_path, tiny_causal_dir, "tensorboard", "tb")
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    scalars = events.Tags()["scalars"] + events.Tags()["tensors"]
    assert {"loss", "lr", "grad_norm", "eval/accuracy", "heldout/accuracy"} <= set(scalars)

    def values(tag: str) -> list[tuple[int, float]]:
        if tag in events.Tags()["scalars"]:
            return [(e.step, e.value) for e in events.Scalars(tag)]
        return [(e.step, float(e.tensor_proto.float_val[0])) for e in events.Tensors(tag)]

    got = values("loss")
    assert [s for s, _ in got] == [1, 2, 3]
    assert [v for _, v in got] == pytest.approx(losses, rel=1e-6)
    evals = [(r["step"], r["eval"]["accuracy"]) for r in log if "eval" in r]
    assert evals and [s for s, _ in values("eval/accuracy")] == [s for s, _ in evals]
    assert [v for _, v in values("eval/accuracy")] == pytest.approx([v for _, v in evals])
    texts = {t: events.Tensors(t)[0].tensor_proto.string_val[0].decode()
             for t in events.Tags()["tensors"] if t.endswith("text_summary")}
    assert any('"lr": 5e-05' in v for v in texts.values())  # the config
    assert str(run / "model") in texts["artifacts/model/text_summary"]


def test_mlflow_store_holds_the_training_run_and_the_evaluation(
        tmp_path: Path, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 prefers a database
    data, out, db = _data(tmp_path), tmp_path / "rm", f"sqlite:///{tmp_path / 'db.sqlite'}"
    main(["train", "reward", "--data", str(data), "--model", str(tiny_encoder_dir), "--db", db,
          "--out", str(out), "--report-to", "mlflow", "max_steps=3", "batch_size=2",
          "max_length=32", "test_fraction=0", "val_fraction=0.25", "precision=fp32"])
    client = MlflowClient(tracking_uri=uri)
    run_id = (out / "run" / "mlflow_run_id").read_text().strip()
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert "train/lr" in got.data.params and got.data.params["train/max_steps"] == "3"
    assert got.data.params["config/max_length"] == "32"
    history = client.get_metric_history(run_id, "loss")
    log = [json.loads(x) for x in (out / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [r["loss"] for r in log if "loss" in r], rel=1e-6)
    assert [m.step for m in client.get_metric_history(run_id, "eval/accuracy")]
    assert "val/val_accuracy" in got.data.metrics
    assert got.data.tags["artifact.model"] == str(out)
    assert got.data.tags["artifact.checkpoints"] == str(out / "run" / "checkpoints")
    # The evaluation stage reports too, as its own run in the same store.
    main(["eval", "reward", "--model", str(out), "--data", str(data), "--db", db,
          "--out", str(tmp_path / "ev"), "--report-to", "mlflow", "probes=0"])
    ev = client.get_run((tmp_path / "ev" / "mlflow_run_id").read_text().strip())
    assert ev.data.params["model"] == str(out) and "accuracy" in ev.data.metrics
    assert ev.data.tags["artifact.result"].startswith(str(tmp_path / "ev"))
    with pytest.raises(PreflineError, match="report_to"):
        TrainConfig(report_to="wandb")  # type: ignore[arg-type]
