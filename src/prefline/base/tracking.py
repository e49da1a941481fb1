"""Experiment tracking where teams already look: ``report_to`` none | tensorboard | mlflow.

One small interface for every training and evaluation stage: the settings once, numeric
metrics per step (nested dicts flattened to ``a/b``), and the paths of what the run wrote.
TensorBoard writes event files under ``<run>/tensorboard``; MLflow logs to
``MLFLOW_TRACKING_URI`` (mlflow's default when unset) in the experiment ``prefline``, and
the run id is kept in ``<run>/mlflow_run_id`` so a resumed run, and the stage's export after
training, add to the same MLflow run. The backends are imported only when asked for.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import TracebackType
from typing import Any

from prefline.base.errors import PreflineError

REPORT_TO = ("none", "tensorboard", "mlflow")
MLFLOW_RUN_FILE = "mlflow_run_id"


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def numeric(values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers among flattened ``values`` (bools and strings are not metrics)."""
    return {k: float(v) for k, v in flatten(values).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Tracker:
    """Does nothing (``report_to=none``); the base of the real ones."""

    def log_config(self, config: dict[str, Any]) -> None:
        """The run's settings, once."""

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        """Numeric entries of ``metrics`` (nested dicts flattened) at ``step``."""

    def log_artifact(self, name: str, path: str | Path) -> None:
        """Where the run wrote ``name`` (a path, not a copy of the files)."""

    def close(self) -> None:
        """Flush and finish."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class TensorBoardTracker(Tracker):
    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(config, indent=1, default=str)
        self.writer.add_text("config", f"```\n{text}\n```")

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        for k, v in numeric(metrics).items():
            self.writer.add_scalar(k, v, global_step=step)

    def log_artifact(self, name: str, path: str | Path) -> None:
        self.writer.add_text(f"artifacts/{name}", str(path))

    def close(self) -> None:
        self.writer.close()


class MLflowTracker(Tracker):
    def __init__(self, run_dir: Path, name: str, fresh: bool) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        id_file = run_dir / MLFLOW_RUN_FILE
        if id_file.exists() and not fresh:
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            exp = self.client.get_experiment_by_name("prefline")
            exp_id = exp.experiment_id if exp else self.client.create_experiment("prefline")
            self.run_id = self.client.create_run(exp_id, run_name=name).info.run_id
            run_dir.mkdir(parents=True, exist_ok=True)
            id_file.write_text(self.run_id)

    def log_config(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        # MLflow params are write-once strings; a resumed run logs the same values again.
        existing = self.client.get_run(self.run_id).data.params
        params = [Param(k, str(v)[:6000]) for k, v in flatten(config, "").items()
                  if k not in existing]
        for i in range(0, len(params), 100):  # log_batch takes at most 100 params
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in numeric(metrics).items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, name: str, path: str | Path) -> None:
        self.client.set_tag(self.run_id, f"artifact.{name}", str(path))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def open_tracker(report_to: str, run_dir: Path, name: str, *, fresh: bool = False) -> Tracker:
    """The tracker ``report_to`` names for the run in ``run_dir`` (``name`` labels it in
    MLflow). ``fresh`` starts a new MLflow run even where the folder names one."""
    check_report_to(report_to)
    if report_to == "tensorboard":
        return TensorBoardTracker(run_dir)
    if report_to == "mlflow":
        return MLflowTracker(run_dir, name, fresh)
    return Tracker()


def log_paths(report_to: str, run_dir: Path, paths: dict[str, str | Path],
              metrics: dict[str, Any] | None = None, step: int = 0) -> None:
    """Add what a stage wrote after training (its exported model, report) and its final
    metrics to the run's tracker (the same MLflow run the engine opened in ``run_dir``)."""
    if report_to == "none":
        return
    with open_tracker(report_to, run_dir, run_dir.name) as tracker:
        for name, path in paths.items():
            tracker.log_artifact(name, path)
        if metrics:
            tracker.log_metrics(metrics, step)


def check_report_to(value: str) -> None:
    """Refuse anything but none, tensorboard or mlflow (configs call this)."""
    if value not in REPORT_TO:
        raise PreflineError(f"report_to must be none, tensorboard or mlflow, got {value!r}",
                            field="report_to")


def log_run(report_to: str, run_dir: Path, config: dict[str, Any], metrics: dict[str, Any],
            paths: dict[str, str | Path | None]) -> None:
    """A one-shot stage (an evaluation): its settings, metrics and output paths as one new
    tracked run."""
    with open_tracker(report_to, run_dir, run_dir.name, fresh=True) as tracker:
        tracker.log_config(config)
        tracker.log_metrics(metrics, 0)
        for name, path in paths.items():
            if path is not None:
                tracker.log_artifact(name, path)
