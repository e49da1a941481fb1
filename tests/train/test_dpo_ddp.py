"""`torchrun --nproc-per-node 2 -m prefline train dpo` == one process with twice the batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _losses(run: Path) -> list[float]:
    rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.parametrize("loss", ["sigmoid", "kto"])  # kto: z0 is reduced over processes
def test_two_processes_equal_one_process_with_double_batch(tmp_path: Path, tiny_causal_dir: Path,
                                                           loss: str) -> None:
    data = tmp_path / "pairs.jsonl"
    with data.open("w") as fh:
        for i in range(16):
            fh.write(json.dumps({"prompt": f"q{i} " + "why? " * (i % 5),
                                 "chosen": "Yes, gladly. " * (1 + i % 2),
                                 "rejected": "no" + "!" * (i % 4)}) + "\n")
    common = ["-m", "prefline", "train", "dpo", "--data", str(data), "--model",
              str(tiny_causal_dir), "--beta", "0.5", "--loss", loss, "--json", "lr=2e-3",
              "max_steps=3", "precision=fp32", "warmup_ratio=0", "val_fraction=0", "test_fraction=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    two = subprocess.Popen(
        [str(torchrun), "--nproc-per-node", "2", "--master-port", str(_free_port()), *common,
         "--out", str(tmp_path / "two"), "batch_size=2"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    one = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one"), "batch_size=4"],
                         env=env, capture_output=True, timeout=180)
    out, err = two.communicate(timeout=180)
    assert one.returncode == 0, one.stderr.decode()[-2000:]
    assert two.returncode == 0, err.decode()[-2000:]
    assert json.loads(out)["steps"] == 3  # only rank 0 prints
    assert len(_losses(tmp_path / "two")) == 3
    torch.testing.assert_close(_losses(tmp_path / "two"), _losses(tmp_path / "one"),
                               rtol=1e-5, atol=1e-6)
