"""Interrupts and resume, end to end: a real ``prefline train dpo`` process stopped by a real
SIGINT, resumed and stopped by a real SIGTERM, then resumed to the end, equals an
uninterrupted run (weights and log); a resume that differs from its checkpoint is refused
before training; old checkpoints are pruned."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from policy_fixtures import config, context, pair_rows, toy_pairs, write_jsonl
from safetensors.torch import load_file

from prefline.base import interrupts
from prefline.base.errors import PreflineError
from prefline.cli import interrupted_line, main
from prefline.registry import list_artifacts
from prefline.train.dpo import run

STEPS = 100  # the signal lands within the first ~45 steps: a wide margin on a busy CPU
TIMING = ("seconds", "examples_per_s", "tokens_per_s")


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", pair_rows(toy_pairs()))


def _args(data: Path, model: Path, out: Path, db: str) -> list[str]:
    return ["train", "dpo", "--data", str(data), "--model", str(model), "--out", str(out),
            "--db", db, "--max-steps", str(STEPS), "--batch-size", "4", "--lr", "2e-3",
            "--precision", "fp32", "--warmup-ratio", "0", "--eval-every", "5", "--beta", "0.5",
            "--val-fraction", "0.25", "--test-fraction", "0", "--max-length", "64"]


def _log(run_dir: Path) -> list[dict[str, Any]]:
    """train_log.jsonl less the wall-clock fields."""
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in recs]


def _last_step(log: Path) -> int:
    try:
        lines = log.read_text().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, KeyError):
        return 0  # not there yet, or a line half-written


def _interrupt_at(args: list[str], log: Path, step: int, sig: int) -> tuple[int, str]:
    """Start ``prefline *args``, send ``sig`` once the log reaches ``step``; (code, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PREFLINE_PROGRESS_SECONDS": "1000"}
    # SIGINT back to its default in the child: a job started in the background by a
    # non-interactive shell inherits SIGINT ignored, and Python then keeps it ignored.
    proc = subprocess.Popen([sys.executable, "-m", "prefline", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while _last_step(log) < step and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _checkpoint_step(run_dir: Path) -> int:
    return int((run_dir / "checkpoints" / "latest").read_text().split("-")[1])


def test_sigint_then_sigterm_then_resume_equals_uninterrupted(
        tmp_path: Path, pairs_file: Path, tiny_causal_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    ref_dir, cut_dir = tmp_path / "uninterrupted", tmp_path / "interrupted"
    main(_args(pairs_file, tiny_causal_dir, ref_dir, db))
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    first, second = rng.randint(2, 20), rng.randint(5, 20)
    why = f"interrupt steps drawn with seed {seed}: {first}, +{second}"
    args = _args(pairs_file, tiny_causal_dir, cut_dir, db)

    code, err = _interrupt_at(args, cut_dir / "train_log.jsonl", first, signal.SIGINT)
    at = _checkpoint_step(cut_dir)
    assert code == 130, (why, err)
    assert first <= at < STEPS, why
    line = err.strip().splitlines()[-1]
    assert line == (f"interrupted (SIGINT) at step {at} of {STEPS}; checkpoint saved in "
                    f"{cut_dir / 'checkpoints' / f'step-{at}'}; continue with: prefline "
                    + " ".join(args) + " --resume"), why
    assert not (cut_dir / "model").exists()  # nothing exported, nothing recorded

    code, err = _interrupt_at([*args, "--resume"], cut_dir / "train_log.jsonl", at + second,
                              signal.SIGTERM)
    at2 = _checkpoint_step(cut_dir)
    assert code == 143, (why, err)
    assert at + second <= at2 < STEPS, why
    assert err.strip().splitlines()[-1].startswith(
        f"interrupted (SIGTERM) at step {at2} of {STEPS}; checkpoint saved in "), why

    main([*args, "--resume"])
    assert _log(cut_dir) == _log(ref_dir), why  # every step once, the same losses and evals
    ref = load_file(str(ref_dir / "model" / "model.safetensors"))
    got = load_file(str(cut_dir / "model" / "model.safetensors"))
    assert ref.keys() == got.keys()
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], msg=f"{name} differs ({why})")
    assert [a.path for a in list_artifacts("policy", db)] == [str(ref_dir / "model"),
                                                             str(cut_dir / "model")]
    capsys.readouterr()


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_mismatched_resume_is_refused_naming_the_fields(
        tmp_path: Path, pairs_file: Path, tiny_causal_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    run(config(pairs_file, tiny_causal_dir, train={"max_steps": 3}), context(out))
    before = _snapshot(out)

    with pytest.raises(PreflineError) as err:
        run(config(pairs_file, tiny_causal_dir, beta=0.2,
                   train={"max_steps": 3, "resume": True, "lr": 1e-3}), context(out))
    text = str(err.value)
    assert text.startswith(f"cannot resume from {out / 'checkpoints' / 'step-3'}: ")
    assert "beta (checkpoint 0.5, this run 0.2)" in text
    assert "train.lr (checkpoint 0.002, this run 0.001)" in text

    other = write_jsonl(tmp_path / "other.jsonl", pair_rows(toy_pairs(seed=1)))
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with pytest.raises(SystemExit) as exit_:
        main(["train", "dpo", "--data", str(other), "--model", str(tiny_causal_dir), "--out",
              str(out), "--db", db, "--resume", "max_steps=3", "batch_size=4", "lr=2e-3",
              "precision=fp32", "warmup_ratio=0", "beta=0.5", "val_fraction=0.25",
              "test_fraction=0"])
    assert exit_.value.code == 2
    err_text = capsys.readouterr().err.strip().splitlines()[-1]
    assert err_text.startswith("error: field 'data': cannot resume from ")
    assert " in data (checkpoint " in err_text
    assert _snapshot(out) == before  # nothing trained, logged, saved or exported
    assert list_artifacts("policy", db) == []  # and nothing registered


def test_longer_run_resumes_only_where_the_learning_rate_is_unchanged(
        tmp_path: Path, pairs_file: Path, tiny_causal_dir: Path) -> None:
    out = tmp_path / "run"
    run(config(pairs_file, tiny_causal_dir, train={"max_steps": 2, "schedule": "cosine"}),
        context(out))
    with pytest.raises(PreflineError, match="field 'max_steps'.*2 steps long and this one is 4"):
        run(config(pairs_file, tiny_causal_dir,
                   train={"max_steps": 4, "schedule": "cosine", "resume": True}), context(out))
    res = run(config(pairs_file, tiny_causal_dir,
                     train={"max_steps": 2, "schedule": "cosine", "resume": True}), context(out))
    assert res.steps == 2 and res.history == []  # a finished run: nothing more to train


def test_interrupted_line_names_the_run_folder_when_out_was_not_given() -> None:
    interrupts.keep(interrupts.Kept("at step 3 of 9; checkpoint saved in R/checkpoints/step-3",
                                    run_folder=Path("R")))
    try:
        line = interrupted_line(["train", "reward", "--data", "x y.jsonl", "resume=false"],
                                interrupts.Terminated())
    finally:
        interrupts.forget()
    assert line == ("interrupted (SIGTERM) at step 3 of 9; checkpoint saved in "
                    "R/checkpoints/step-3; continue with: prefline train reward --data "
                    "'x y.jsonl' --out R --resume")
    assert interrupted_line(["generate"], KeyboardInterrupt()) == "interrupted (SIGINT)"


def test_signals_inside_deferred_land_after_the_block() -> None:
    # Python's own SIGINT handler, as in an interactive run (a background job has it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        reached.append("end of block")
    assert reached == ["end of block"]
    with pytest.raises(interrupts.Terminated), interrupts.sigterm_raises(), \
            interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        reached.append("again")
    assert reached[-1] == "again"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
