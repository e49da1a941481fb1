"""The shared engine: accumulation == big batch, resume == uninterrupted, 2 procs == 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prefline.base.errors import PreflineError
from prefline.base.precision import resolve_precision
from prefline.train.engine import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).parent))
from toy import ToyTask, toy_data, toy_model  # noqa: E402


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(lr=0.05, precision="fp32", warmup_ratio=0.0, epochs=2)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_grad_accumulation_equals_large_batch(tmp_path: Path) -> None:
    big = toy_model()
    r1 = Trainer(big, ToyTask(), toy_data(), _cfg(batch_size=8), run_dir=tmp_path / "a").fit()
    acc = toy_model()
    r2 = Trainer(acc, ToyTask(), toy_data(), _cfg(batch_size=2, grad_accum=4),
                 run_dir=tmp_path / "b").fit()
    assert r1.steps == r2.steps == 8
    torch.testing.assert_close([h["loss"] for h in r1.history], [h["loss"] for h in r2.history],
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_params(big), _params(acc), rtol=1e-5, atol=1e-6)
    # and training actually learned something
    assert r1.history[-1]["loss"] < r1.history[0]["loss"]


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    full = toy_model(dropout=0.3)
    ref = Trainer(full, ToyTask(), toy_data(), _cfg(batch_size=4), run_dir=tmp_path / "full").fit()

    part = toy_model(dropout=0.3)
    # An interrupted run: same schedule (16 steps) but the process "dies" after step 5.
    cut = Trainer(part, ToyTask(), toy_data(), _cfg(batch_size=4, save_every=5),
                  run_dir=tmp_path / "r")
    cut.total = 5
    cut.fit()
    fresh = toy_model(dropout=0.3, seed=123)  # different init: resume must overwrite it
    resumed = Trainer(fresh, ToyTask(), toy_data(), _cfg(batch_size=4, resume=True),
                      run_dir=tmp_path / "r")
    res = resumed.fit()
    assert res.steps == ref.steps == 16
    torch.testing.assert_close([h["loss"] for h in res.history],
                               [h["loss"] for h in ref.history[5:]])
    torch.testing.assert_close(_params(fresh), _params(full))
    log = [json.loads(x) for x in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 17))


def test_early_stopping_restores_best(tmp_path: Path) -> None:
    model = toy_model()
    scores = iter([0.5, 0.9, 0.6, 0.4, 0.3, 0.2, 0.1, 0.0] * 4)
    snapshots: list[torch.Tensor] = []

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        snapshots.append(_params(m).clone())
        return {"accuracy": next(scores)}

    cfg = _cfg(batch_size=4, eval_every=1, early_stopping_patience=2, epochs=4)
    res = Trainer(model, ToyTask(), toy_data(), cfg, run_dir=tmp_path, evaluate=evaluate).fit()
    assert res.steps == 4  # stopped after two evals without improvement
    assert res.best is not None and res.best["accuracy"] == 0.9
    torch.testing.assert_close(_params(model), snapshots[1])


def test_metrics_logged_and_bad_config(tmp_path: Path) -> None:
    res = Trainer(toy_model(), ToyTask(), toy_data(8), _cfg(batch_size=4), run_dir=tmp_path).fit()
    assert {"loss", "lr", "grad_norm", "abs_err", "examples_per_s"} <= set(res.history[0])
    with pytest.raises(PreflineError, match="lr"):
        _cfg(lr=0.0)
    with pytest.raises(PreflineError, match="no training examples"):
        Trainer(toy_model(), ToyTask(), [], _cfg(), run_dir=tmp_path)


def test_precision_auto_is_bf16_on_this_cpu() -> None:
    from prefline.base.precision import cpu_has_native_bf16

    assert resolve_precision("fp32") is None
    assert resolve_precision("auto") == (torch.bfloat16 if cpu_has_native_bf16() else None)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_processes_equal_one_process_double_batch(tmp_path: Path) -> None:
    worker = Path(__file__).parent / "_ddp_worker.py"
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", str(_free_port()),
                    str(worker), str(tmp_path / "two"), "2"], check=True, env=env, timeout=120)
    subprocess.run([sys.executable, str(worker), str(tmp_path / "one"), "4"], check=True,
                   env=env, timeout=120)
    two = json.loads((tmp_path / "two" / "losses.json").read_text())
    one = json.loads((tmp_path / "one" / "losses.json").read_text())
    assert len(two) == len(one) == 16
    torch.testing.assert_close(two, one, rtol=1e-5, atol=1e-6)
