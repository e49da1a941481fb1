"""Online RL (train grpo|rloo|ppo) on ``ctx.device``: the policy (with its value head or
critic), the reference and every tensor of a step's batch (rollout, rewards, old and
reference log-probs, advantages, returns) are where the run's device says, and the monitor
measures there too. On this CPU machine the check runs with ``cpu``; the ``gpu``-marked
variants run it on CUDA (``scripts/gpu-check.sh``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from test_device import _tensors  # noqa: E402
from test_rl import TOY, toy_prompts  # noqa: E402

from prefline.cli import main
from prefline.store.context import Context
from prefline.train import ppo, rl, rl_task

CUDA = torch.cuda.is_available()
gpu = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]


def _record(monkeypatch: pytest.MonkeyPatch, seen: list[str]) -> None:
    """At every loss: the module's parameters and buffers, the reference's and every tensor
    of the batch are on one device; remember which."""
    def checked(original: Any) -> Any:
        def loss(self: rl_task.OnlineTask, model: nn.Module, batch: dict[str, Any]) -> Any:
            where = {t.device for t in _tensors(batch)}
            where |= {p.device for p in model.parameters()} | {b.device for b in model.buffers()}
            if self.ref is not None:
                where |= {p.device for p in self.ref.parameters()}
            assert len(where) == 1, where
            assert {"rollout", "rewards", "advantages"} <= set(batch)
            seen.append(str(where.pop()))
            return original(self, model, batch)
        return loss

    monkeypatch.setattr(rl.RLTask, "loss", checked(rl.RLTask.loss))
    monkeypatch.setattr(ppo.PPOTask, "loss", checked(ppo.PPOTask.loss))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=gpu)])
@pytest.mark.parametrize("method", ["grpo", "ppo"])
def test_rl_stages_train_on_ctx_device(method: str, device: str, tmp_path: Path,
                                       tiny_causal_dir: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    _record(monkeypatch, seen)
    prompts = toy_prompts(tmp_path / "p.jsonl")
    extra = ["value_model=critic", "iterations=2"] if method == "ppo" else ["iterations=2"]
    main(["train", method, "--prompts", str(prompts), "--model", str(tiny_causal_dir),
          "--reward-fn", TOY, "--k", "2", "--max-new-tokens", "3", "--device", device,
          "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "--out", str(tmp_path / "run"),
          "--monitor-every", "1", "--monitor-limit", "2", "max_steps=2", "batch_size=4",
          "precision=fp32", *extra])
    want = str(Context(device=device).torch_device)
    assert len(seen) == 2 and set(seen) == {want}
    recs = (tmp_path / "run" / "monitor.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in recs] == [0, 1, 2]


@pytest.mark.skipif(CUDA, reason="the refusal is for machines without CUDA")
def test_cuda_without_a_gpu_is_refused_by_the_device_rule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--device cuda`` is no longer refused by the RL stages themselves; on a machine
    without CUDA the one device rule refuses it before any model loads."""
    def no_load(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the model loaded before the device was checked")

    monkeypatch.setattr(rl_task, "load_causal_lm", no_load)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "grpo", "--reward-fn", TOY, "--device", "cuda",
              "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "in this version" not in err
