"""The shared engine: accumulation == big batch, resume == uninterrupted, 2 procs == 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from prefline.base import interrupts
from prefline.base.errors import PreflineError
from prefline.base.precision import resolve_precision
from prefline.train.engine import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).parent))
from toy import ToyTask, toy_data, toy_model  # noqa: E402

TIMING = ("seconds", "examples_per_s")


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(lr=0.05, precision="fp32", warmup_ratio=0.0, epochs=2)
    base.update(kw)
    return TrainConfig(**base)


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


class StopAt(ToyTask):
    """Raises ``exc`` at the ``at``-th micro-batch loss (counting from 1), like a signal."""

    def __init__(self, at: int, exc: type[BaseException] = KeyboardInterrupt) -> None:
        self.calls, self.at, self.exc = 0, at, exc

    def loss(self, model: torch.nn.Module, batch: dict[str, object]) -> tuple[torch.Tensor, float, dict[str, float]]:
        self.calls += 1
        if self.calls == self.at:
            raise self.exc()
        return super().loss(model, batch)  # type: ignore[arg-type]


def _evaluator(fail_at_call: int | None = None) -> Callable[[torch.nn.Module], dict[str, float]]:
    val = toy_data(8, seed=1)
    calls = [0]

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        calls[0] += 1
        if calls[0] == fail_at_call:
            raise interrupts.Terminated()
        x, y = torch.stack([v[0] for v in val]), torch.stack([v[1] for v in val])
        return {"accuracy": -float(((m(x).squeeze(-1) - y) ** 2).mean())}
    return evaluate


def _log(run_dir: Path) -> list[dict[str, object]]:
    recs = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in recs]


def test_interrupts_mid_step_and_mid_eval_resume_to_the_uninterrupted_run(tmp_path: Path) -> None:
    """grad_accum=2 and dropout: an interrupt in a step's 2nd micro-batch keeps the step
    before (weights, optimizer, random state); one inside an evaluation re-runs it."""
    cfg = _cfg(batch_size=2, grad_accum=2, eval_every=4)
    full = toy_model(dropout=0.3)
    Trainer(full, ToyTask(), toy_data(), cfg, run_dir=tmp_path / "full",
            evaluate=_evaluator()).fit()
    out = tmp_path / "cut"
    with pytest.raises(interrupts.Terminated):  # the 2nd evaluation, at step 8
        Trainer(toy_model(dropout=0.3), ToyTask(), toy_data(), cfg, run_dir=out,
                evaluate=_evaluator(fail_at_call=2)).fit()
    assert (out / "checkpoints" / "latest").read_text() == "step-8"
    assert [r["step"] for r in _log(out)] == [1, 2, 3, 4, 4, 5, 6, 7, 8]  # eval 4, not 8
    resumed = Trainer(toy_model(dropout=0.3, seed=5), StopAt(2 * 2 + 2), toy_data(),
                      replace(cfg, resume=True), run_dir=out, evaluate=_evaluator())
    with pytest.raises(KeyboardInterrupt):  # 2nd micro-batch of the 3rd step after 8
        resumed.fit()
    assert (out / "checkpoints" / "latest").read_text() == "step-10"
    kept = interrupts.kept()
    assert kept is not None and kept.what == (
        f"at step 10 of 16; checkpoint saved in {out / 'checkpoints' / 'step-10'}")
    last = toy_model(dropout=0.3, seed=6)
    res = Trainer(last, ToyTask(), toy_data(), replace(cfg, resume=True), run_dir=out,
                  evaluate=_evaluator()).fit()
    assert res.steps == 16
    assert _log(out) == _log(tmp_path / "full")
    torch.testing.assert_close(_params(last), _params(full))


def test_resume_truncates_the_log_to_the_checkpoint(tmp_path: Path) -> None:
    """A process killed outright (SIGKILL, power loss) after step 16 but whose newest
    checkpoint is step 9: the resumed log holds each step once."""
    full = toy_model()
    Trainer(full, ToyTask(), toy_data(), _cfg(batch_size=4, save_every=3, keep_last=9),
            run_dir=tmp_path).fit()
    (tmp_path / "checkpoints" / "latest").write_text("step-9")
    with open(tmp_path / "train_log.jsonl", "a") as fh:
        fh.write('{"loss": 0.1, "st')  # a line cut short by the kill
    again = toy_model(seed=3)
    res = Trainer(again, ToyTask(), toy_data(), _cfg(batch_size=4, resume=True),
                  run_dir=tmp_path).fit()
    assert [h["step"] for h in res.history] == list(range(10, 17))
    assert [r["step"] for r in _log(tmp_path)] == list(range(1, 17))
    torch.testing.assert_close(_params(again), _params(full))


def test_keep_last_prunes_old_step_checkpoints_but_keeps_best(tmp_path: Path) -> None:
    cfg = _cfg(batch_size=4, save_every=2, keep_last=2, eval_every=2)
    Trainer(toy_model(), ToyTask(), toy_data(), cfg, run_dir=tmp_path,
            evaluate=_evaluator()).fit()
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "latest", "step-14", "step-16"]
    assert (ckpts / "latest").read_text() == "step-16"
    # time-based: every step is "10 minutes later" here; keep_last=1 leaves one
    timed = _cfg(batch_size=4, save_every_minutes=1e-9, keep_last=1)
    Trainer(toy_model(), ToyTask(), toy_data(), timed, run_dir=tmp_path / "t").fit()
    assert sorted(p.name for p in (tmp_path / "t" / "checkpoints").iterdir()) == [
        "latest", "step-16"]


def test_resume_without_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No checkpoint and no log: a notice, then step 0. A log but no checkpoint: refused (the
    log's steps would be lost silently)."""
    res = Trainer(toy_model(), ToyTask(), toy_data(), _cfg(batch_size=4, resume=True),
                  run_dir=tmp_path / "empty").fit()
    assert res.steps == 16 and len(res.history) == 16
    assert f"no checkpoint in {tmp_path / 'empty'}; training from step 0" in capsys.readouterr().err
    (tmp_path / "logged").mkdir()
    (tmp_path / "logged" / "train_log.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    with pytest.raises(PreflineError, match="has a train_log.jsonl but no checkpoint"):
        Trainer(toy_model(), ToyTask(), toy_data(), _cfg(batch_size=4, resume=True),
                run_dir=tmp_path / "logged")


def test_resume_refuses_other_settings_and_a_fresh_run_clears_the_folder(tmp_path: Path) -> None:
    Trainer(toy_model(), ToyTask(), toy_data(), _cfg(batch_size=4, max_steps=3),
            run_dir=tmp_path, fingerprint={"data": "abc"}).fit()
    with pytest.raises(PreflineError) as err:
        Trainer(toy_model(), ToyTask(), toy_data(), _cfg(batch_size=2, max_steps=3, resume=True),
                run_dir=tmp_path, fingerprint={"data": "abd"})
    assert "in data (checkpoint abc, this run abd) and train.batch_size (checkpoint 4, this " \
           "run 2);" in str(err.value)
    # longer with a decaying schedule: the steps taken would have had other learning rates
    with pytest.raises(PreflineError, match="field 'max_steps'"):
        Trainer(toy_model(), ToyTask(), toy_data(), _cfg(batch_size=4, max_steps=6, resume=True),
                run_dir=tmp_path, fingerprint={"data": "abc"})
    Trainer(toy_model(), ToyTask(), toy_data(), _cfg(batch_size=4, max_steps=2),
            run_dir=tmp_path).fit()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-2"]


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
