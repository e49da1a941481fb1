"""Devices in one place: the resolution rule, precision per device, and that the two
training stages put every module and every batch tensor on ``ctx.device``.

On this CPU machine the stage test runs with ``cpu``; ``gpu``-marked variants run the same
checks on CUDA (``scripts/gpu-check.sh``). The ``meta`` device stands in for "another
device" where a test must show that tensors really move.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import torch

from prefline.base.distributed import backend_for, pick_device, place, to_device
from prefline.base.errors import PreflineError
from prefline.base.precision import (
    autocast_context,
    cpu_has_native_bf16,
    grad_scaler,
    resolve_precision,
)
from prefline.cli import main
from prefline.formats.examples import PreferencePair
from prefline.models.tiny import tiny_causal_lm
from prefline.store.context import Context
from prefline.train import engine
from prefline.train.logprobs import SequenceLogps
from prefline.train.policy_batch import encode_pairs
from prefline.train.policy_config import DPOConfig
from prefline.train.policy_tasks import DPOTask

CUDA = torch.cuda.is_available()
gpu = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]


@pytest.mark.parametrize(("spec", "gpus", "local", "want"), [
    ("auto", 0, 0, "cpu"), ("cpu", 2, 1, "cpu"), ("auto", 2, 1, "cuda:1"),
    ("cuda", 4, 3, "cuda:3"), ("cuda:1", 2, 0, "cuda:1"), ("auto", 1, 0, "cuda:0")])
def test_pick_device(spec: str, gpus: int, local: int, want: str) -> None:
    """auto = this process's GPU (torchrun's LOCAL_RANK) when CUDA is present; cuda:N wins."""
    assert pick_device(spec, cuda_count=gpus, local=local) == want


@pytest.mark.parametrize(("spec", "gpus", "local", "says"), [
    ("cuda", 0, 0, "sees no CUDA device"), ("cuda:2", 2, 0, "only 2 are visible"),
    ("auto", 1, 1, "only 1 are visible"), ("gpu", 1, 0, "expected auto, cpu"),
    ("cpu:0", 1, 0, "expected auto, cpu")])
def test_pick_device_refusals(spec: str, gpus: int, local: int, says: str) -> None:
    with pytest.raises(PreflineError, match=says):
        pick_device(spec, cuda_count=gpus, local=local)


def test_context_resolves_the_device_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = Context(device="cpu")
    assert ctx.torch_device == torch.device("cpu") and ctx.torch_device is ctx.torch_device
    assert Context().torch_device.type == ("cuda" if CUDA else "cpu")
    with pytest.raises(PreflineError, match="device"):
        Context(device="tpu")
    if not CUDA:
        with pytest.raises(PreflineError, match="no CUDA device"):
            _ = Context(device="cuda").torch_device
    assert backend_for("cpu") == "gloo"


def test_precision_per_device() -> None:
    """bf16 where native (CPU with AMX/AVX-512 BF16), fp32 on other CPUs; fp16 gets a scaler
    only on a GPU; autocast names the model's device type."""
    assert resolve_precision("auto", "cpu") == (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert resolve_precision("fp32", "cuda") is None
    assert resolve_precision("fp16") == torch.float16
    assert grad_scaler(torch.float16, "cpu") is None and grad_scaler(torch.bfloat16, "cpu") is None
    assert isinstance(autocast_context(None, "cpu"), nullcontext)
    ac = autocast_context(torch.bfloat16, torch.device("cpu"))
    assert isinstance(ac, torch.autocast) and ac.device == "cpu"


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from _tensors(getattr(obj, name))


def test_every_tensor_of_a_batch_moves_and_a_placed_model_moves_its_inputs() -> None:
    lm, tok = tiny_causal_lm(hidden=32, layers=1, heads=2)
    pairs = [PreferencePair(prompt=[{"role": "user", "content": f"q{i}"}],
                            chosen="yes " * (i + 1), rejected="no") for i in range(3)]
    enc, _ = encode_pairs(pairs, tok, 64)
    batch = DPOTask(DPOConfig(), tok.pad_token_id).collate(
        [dataclasses.replace(e, ref=(0.0, 0.0)) for e in enc])
    meta = torch.device("meta")
    moved = to_device({"b": batch, "more": [batch.targets, (batch.lengths,)]}, meta)
    found = list(_tensors(moved))
    assert len(found) == len(list(_tensors(batch))) + 2
    assert all(t.device == meta for t in found) and moved["b"].n == batch.n
    # The hook: a model placed on a device takes a CPU batch and computes there.
    fn = place(SequenceLogps(lm), meta)
    assert all(p.device == meta for p in fn.parameters())
    assert fn(batch).device == meta
    # The CPU path is left alone: no hook, so nothing is paid per call.
    cpu_lm, _ = tiny_causal_lm(hidden=32, layers=1, heads=2)
    assert not place(SequenceLogps(cpu_lm), torch.device("cpu"))._forward_pre_hooks


def _record_placement(monkeypatch: pytest.MonkeyPatch, seen: list[str]) -> None:
    """Make the engine check, at every micro-batch, that the model and batch are on its
    device, and remember which device that was."""
    original = engine.Trainer._micro_batches

    def checked(self: engine.Trainer, step: int) -> Iterator[Any]:
        for batch in original(self, step):
            where = {t.device for t in _tensors(batch)}
            where |= {p.device for p in self.model.parameters()}
            where |= {b.device for b in self.model.buffers()}
            assert where == {self.device}, where
            seen.append(str(self.device))
            yield batch

    monkeypatch.setattr(engine.Trainer, "_micro_batches", checked)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=gpu)])
@pytest.mark.parametrize("stage", ["dpo", "reward"])
def test_stages_train_on_ctx_device(stage: str, device: str, tmp_path: Path,
                                    tiny_causal_dir: Path, tiny_encoder_dir: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "yes " * (1 + i % 3),
                                        "rejected": "no"}) + "\n" for i in range(8)))
    seen: list[str] = []
    _record_placement(monkeypatch, seen)
    model = tiny_causal_dir if stage == "dpo" else tiny_encoder_dir
    main(["train", stage, "--data", str(data), "--model", str(model), "--device", device,
          "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "--out", str(tmp_path / "run"),
          "max_steps=2", "batch_size=2", "val_fraction=0.25", "test_fraction=0"])
    want = str(Context(device=device).torch_device)
    assert seen and set(seen) == {want}
