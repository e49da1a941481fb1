"""FSDP2 under torchrun on the CPU (gloo): the two stages' commands, 2 processes == 1, and a
sharded resume == the uninterrupted run, trained by two "nodes" on loopback.

Kept to three torchrun launches: each costs ~10-20 s of start-up on 2 busy cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefline.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from _fsdp_worker import TrainConfig, train  # noqa: E402
from test_dpo_ddp import _free_port, _losses  # noqa: E402

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    found = sorted(p for p in folder.glob("*.safetensors"))
    assert found, f"no weights in {folder}"
    return {f"{p.name}:{k}": v for p in found for k, v in load_file(str(p)).items()}


def _pairs(path: Path) -> Path:
    with path.open("w") as fh:
        for i in range(16):
            fh.write(json.dumps({"prompt": f"q{i} " + "why? " * (i % 5),
                                 "chosen": "Yes, gladly. " * (1 + i % 2),
                                 "rejected": "no" + "!" * (i % 4)}) + "\n")
    return path


def _torchrun(args: list[str], out: Path) -> None:
    got = subprocess.run([TORCHRUN, "--nproc-per-node", "2", "--master-port", str(_free_port()),
                          "-m", "prefline", *args, "--out", str(out)],
                         env=ENV, capture_output=True, timeout=300)
    assert got.returncode == 0, got.stderr.decode()[-3000:]


@pytest.mark.parametrize("stage", ["reward", "dpo"])
def test_fsdp_two_processes_equal_one(stage: str, tmp_path: Path, tiny_causal_dir: Path,
                                      tiny_encoder_dir: Path) -> None:
    """`torchrun --nproc-per-node 2 -m prefline train <stage> --strategy fsdp max_steps=2`
    trains, and its losses and exported weights equal one process with twice the batch."""
    data = _pairs(tmp_path / "pairs.jsonl")
    common = ["train", stage, "--data", str(data), "--db", f"sqlite:///{tmp_path / 'db.sqlite'}",
              "--strategy", "fsdp", "max_steps=2", "precision=fp32", "warmup_ratio=0",
              "val_fraction=0", "test_fraction=0", "lr=2e-3"]
    if stage == "dpo":
        common += ["--model", str(tiny_causal_dir), "--beta", "0.5"]
    else:
        common += ["--model", str(tiny_encoder_dir), "max_length=48", "head_dropout=0",
                   "dropout=0"]
    _torchrun([*common, "batch_size=2"], tmp_path / "two")
    main([*common, "batch_size=4", "--out", str(tmp_path / "one")])
    two, one = tmp_path / "two", tmp_path / "one"
    runs = (two, one) if stage == "dpo" else (two / "run", one / "run")
    assert len(_losses(runs[0])) == 2
    torch.testing.assert_close(_losses(runs[0]), _losses(runs[1]), rtol=1e-5, atol=1e-6)
    assert (runs[0] / "checkpoints" / "step-2" / "sharded" / ".metadata").exists()
    if stage == "dpo":
        two, one = two / "model", one / "model"
    wa, wb = _weights(two), _weights(one)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)


def test_two_nodes_on_loopback_fsdp_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """Two torchrun "nodes" (one process each, c10d rendezvous on 127.0.0.1) train a tiny
    Llama with FSDP and per-layer activation checkpointing: 4 steps straight, 2 steps then a
    resume to 4 from the sharded checkpoint, and LoRA adapters on top; each equals one plain
    process."""
    worker = str(Path(__file__).parent / "_fsdp_worker.py")
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [subprocess.Popen(
        [TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(r),
         "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "prefline-test",
         worker, str(tmp_path / "fsdp")], env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE) for r in (0, 1)]
    cfg = TrainConfig(lr=1e-2, batch_size=4, grad_accum=2, max_steps=4, precision="fp32",
                      warmup_ratio=0.0, schedule="constant", activation_checkpointing=True)
    ref_losses, ref_weights = train(tmp_path / "one", cfg)
    lora_losses, lora_weights = train(tmp_path / "lora", replace(cfg, max_steps=2), lora=True)
    for node in nodes:
        _out, err = node.communicate(timeout=300)
        assert node.returncode == 0, err.decode()[-3000:]
    got = json.loads((tmp_path / "fsdp" / "losses.json").read_text())
    assert len(got["whole"]) == 4 and len(got["resumed"]) == 2  # the resume ran steps 3-4
    torch.testing.assert_close(got["whole"], ref_losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["resumed"], ref_losses[2:], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["lora"], lora_losses, rtol=1e-5, atol=1e-6)
    weights = torch.load(tmp_path / "fsdp" / "weights.pt")
    assert all("lora_" in k for k in lora_weights) and len(lora_weights) == 28
    for run, ref in (("whole", ref_weights), ("resumed", ref_weights), ("lora", lora_weights)):
        assert weights[run].keys() == ref.keys()
        for k, v in ref.items():
            torch.testing.assert_close(weights[run][k], v, rtol=1e-4, atol=1e-5, msg=k)
