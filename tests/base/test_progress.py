"""Progress in logs: plain, uncut lines at most every N seconds and at the end, and "cached"
for a step served from a cache. The throttle runs on a fake clock; one test trains a tiny
DPO run as a real process with stderr to a pipe."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from prefline.base.progress import LineProgress, Reporter, clock_text

ANSI = re.compile(r"\x1b\[")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_are_throttled_to_the_interval_and_one_closes_the_bar() -> None:
    clock, out = FakeClock(), io.StringIO()
    bar = LineProgress(10, "training", interval=10, stream=out, clock=clock)
    for _ in range(3):  # 3 steps within the first 10 s: nothing yet
        clock.now += 3
        bar.update({"loss": 0.69314, "examples_per_s": 12.5, "ignored": 1.0})
    assert out.getvalue() == ""
    clock.now += 1  # 10 s since the start: the 4th step reports
    bar.update({"loss": 0.5, "examples_per_s": 10.0})
    clock.now += 5  # 5 s since the last line: quiet
    bar.update({"loss": 0.4})
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "training 4/10 (40%) loss=0.5 examples/s=10 elapsed 0:00:10 left 0:00:15",
        "training 5/10 (50%) loss=0.4 elapsed 0:00:15 left 0:00:15",
    ]


def test_time_left_counts_only_the_steps_done_in_this_run() -> None:
    clock, out = FakeClock(), io.StringIO()
    bar = LineProgress(100, "training", start=50, interval=0, stream=out, clock=clock)
    clock.now += 20
    bar.update({})  # 1 step in 20 s; 49 to go
    assert out.getvalue().strip() == "training 51/100 (51%) elapsed 0:00:20 left 0:16:20"


def test_unknown_total_and_jumps() -> None:
    clock, out = FakeClock(), io.StringIO()
    bar = LineProgress(None, "reading f.jsonl", interval=0, stream=out, clock=clock)
    bar.set(1200)
    bar.set(description="reading g.jsonl")
    assert out.getvalue().splitlines() == ["reading f.jsonl 1200 elapsed 0:00:00",
                                           "reading g.jsonl 1200 elapsed 0:00:00"]
    assert clock_text(3725.4) == "1:02:05"


def test_a_bar_in_a_log_prints_plain_lines(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLINE_PROGRESS_SECONDS", "0")
    with Reporter().bar(3, "judging") as bar:  # stderr is captured: not a terminal
        bar.advance(2)
        bar.update({"loss": 1.0})
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith("judging 2/3 (67%) elapsed")
    assert err.splitlines()[-1].startswith("judging 3/3 (100%) loss=1 elapsed")
    assert not ANSI.search(err) and "\r" not in err
    with Reporter(enabled=False).bar(3, "quiet") as bar:
        bar.update({})
    Reporter(enabled=False).cached("quiet")
    Reporter().cached("reference log-probs", "24 examples")
    assert capsys.readouterr().err == "reference log-probs cached (24 examples)\n"


def test_train_dpo_in_a_pipe_prints_uncut_progress_lines(tmp_path: Path,
                                                         tiny_causal_dir: Path) -> None:
    """A real process, stderr to a pipe: every line plain, metric lines past 80 columns, the
    right step counts; a second run finds the reference log-probs cached and says so."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(
        f'{{"prompt": "question {i}: why?", "chosen": "A careful, polite answer {i}.", '
        f'"rejected": "no{"!" * (i % 4)}"}}\n' for i in range(16)))
    env = {**os.environ, "PREFLINE_PROGRESS_SECONDS": "0", "COLUMNS": "80",
           "OMP_NUM_THREADS": "1"}

    def train(run: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "prefline", "train", "dpo", "--data", str(data), "--model",
             str(tiny_causal_dir), "--out", str(tmp_path / run), "--db",
             f"sqlite:///{tmp_path / 'store.db'}", "--max-steps", "3", "batch_size=4",
             "precision=fp32", "val_fraction=0", "test_fraction=0"],
            env=env, capture_output=True, timeout=300)  # bytes: text mode would hide \r
        err = proc.stderr.decode()
        assert proc.returncode == 0, err
        assert not ANSI.search(err) and "\r" not in err  # no redraws, ours or the libraries'
        return err.splitlines()

    lines = train("run1")
    steps = [ln for ln in lines if ln.startswith("training ")]
    assert [ln.split()[1] for ln in steps] == ["1/3", "2/3", "3/3"]  # no repeated closing line
    assert all(len(ln) > 80 and " loss=" in ln and " examples/s=" in ln for ln in steps)
    assert any(ln.startswith("reference log-probs (train) 1/1 (100%)") for ln in lines)
    lines = train("run2")
    assert "reference log-probs (train) cached (16 examples)" in lines
    assert not any(ln.startswith("reference log-probs (train) 0/") for ln in lines)
