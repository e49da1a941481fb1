"""``prefline bench dpo --against trl``: prefline's DPO step vs TRL's DPOTrainer, same run.

Both sides train the same policy (default: the embedded SmolLM2-135M-Instruct, converted
once by the parent) with sigmoid DPO, β = 0.1, lr 1e-6, max length 256, full fine-tuning or
LoRA r=16 on all linear layers (``lora``). Every optimizer step, on both sides, trains on the
same ``pairs_per_step`` pairs (the first usable pairs of the data file, written once by the
parent), so the timed steps compare identical batches whatever order a trainer shuffles in.

One warm-up step, then ``steps`` timed steps; a run reports the median step. Reference
log-probs are excluded from step times where a side precomputes them (prefline always does;
TRL does in its fastest setting). TRL runs twice per repetition: in its defaults (bf16
autocast, gradient checkpointing on, reference model run every step) and in its fastest CPU
setting (bf16, ``precompute_ref_log_probs=True``, gradient checkpointing off).

MFU = model FLOP/s (6 · params · tokens for full training, 4 · under LoRA, on prefline's
actual packed tokens) over the matmul peak the harness measured in the same run, in the
precision prefline trained in.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefline.base.distributed import check_device
from prefline.base.errors import PreflineError
from prefline.bench.harness import Benchmark, shared_data, side_main

LR = 1e-6


@dataclass(frozen=True)
class DPOBenchConfig:
    """The DPO workload both sides run."""

    data: str | None = None
    """Pairs file (HH, JSONL, CSV, ...); default: ../shared/data/<HH harmless-base sample>."""
    model: str | None = None
    """Policy: Hub id or folder; None = the embedded SmolLM2-135M-Instruct."""
    steps: int = 3
    """Timed optimizer steps per run, after one warm-up step."""
    pairs_per_step: int = 8
    """Preference pairs per optimizer step (the same pairs every step, on both sides)."""
    max_length: int = 256
    """Tokens of prompt + response."""
    lora: bool = False
    """LoRA r=16 on all linear layers instead of full fine-tuning."""
    device: str = "cpu"
    """Where prefline's side trains: cpu | cuda | cuda:N | auto (scripts/gpu-check.sh)."""

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.steps < 1:
            raise PreflineError(f"steps must be at least 1, got {self.steps}", field="steps")
        if self.pairs_per_step < 1:
            raise PreflineError("pairs_per_step must be at least 1", field="pairs_per_step")
        if self.max_length < 16:
            raise PreflineError("max_length must be at least 16 tokens", field="max_length")


def prepare(cfg: DPOBenchConfig, inputs: Path) -> dict[str, Any]:
    """Write the step's pairs to ``inputs/pairs.jsonl``; convert the default policy once."""
    from prefline.formats.jsonl import write_jsonl
    from prefline.formats.load import load_pairs

    path = Path(cfg.data) if cfg.data else shared_data()
    pairs = [p for p in load_pairs(path) if not p.tie and p.chosen != p.rejected]
    if len(pairs) < cfg.pairs_per_step:
        raise PreflineError(f"the benchmark needs {cfg.pairs_per_step} non-tied pairs, found "
                            f"{len(pairs)}", path=str(path))
    write_jsonl(inputs / "pairs.jsonl", ({"prompt": p.prompt, "chosen": p.chosen,
                                          "rejected": p.rejected}
                                         for p in pairs[:cfg.pairs_per_step]))
    if cfg.model is None:
        from prefline.models.hub import default_policy_dir

        default_policy_dir()  # GGUF -> safetensors once, outside every timed subprocess
    return {"data": str(path), "pairs": cfg.pairs_per_step}


def _model_flops(model: Any, rows: list[dict[str, Any]], lora: bool) -> float:
    """6 (or 4 under LoRA) × body params × packed tokens + same × head params × scored tokens."""
    head = model.get_output_embeddings().weight.numel()
    body = sum(p.numel() for n, p in model.named_parameters()
               if "embed" not in n and "lm_head" not in n and "lora_" not in n)
    tokens = sum(r["tokens"] for r in rows)
    scored = sum(r["scored"] for r in rows)
    return (4 if lora else 6) * (body * tokens + head * scored)


def run_prefline(cfg: DPOBenchConfig, inputs: Path, scratch: Path) -> dict[str, Any]:
    """prefline's DPO stage on the shared pairs (no val or held-out split: all of them train)."""
    from prefline.base.precision import resolve_precision
    from prefline.base.progress import Reporter
    from prefline.store.context import Context, Store
    from prefline.train.dpo import DPOConfig, run
    from prefline.train.train_config import TrainConfig

    train = TrainConfig(lr=LR, batch_size=cfg.pairs_per_step, max_steps=cfg.steps + 1,
                        warmup_ratio=0.0)
    stage = DPOConfig(data=str(inputs / "pairs.jsonl"), model=cfg.model,
                      max_length=cfg.max_length, lora=cfg.lora, val_fraction=0.0,
                      test_fraction=0.0, train=train)
    ctx = Context(store=Store.open(f"sqlite:///{scratch / 'store.db'}"), run_dir=scratch / "out",
                  progress=Reporter(False), device=cfg.device)
    res = run(stage, ctx)
    timed = res.history[1:]
    seconds = statistics.median(h["seconds"] for h in timed)
    # "response_tokens" is averaged per pair by the engine; "tokens" is summed per step.
    rows = [{"tokens": h["tokens"], "scored": h["response_tokens"] * h["examples"]}
            for h in timed]
    return {"pairs_per_s": cfg.pairs_per_step / seconds, "step_s": seconds,
            "tokens_per_step": statistics.median(r["tokens"] for r in rows),
            "model_flops_per_step": _model_flops(res.policy, rows, cfg.lora) / len(rows),
            "precision": {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(
                str(resolve_precision(train.precision, ctx.torch_device)), "fp32"),
            "device": str(ctx.torch_device),
            "steps": [h["seconds"] for h in timed]}


def trl_settings(setting: str) -> dict[str, Any]:
    """What TRL's fastest CPU setting changes from its defaults (nothing for "default")."""
    if setting == "fastest":
        return {"bf16": True, "precompute_ref_log_probs": True, "gradient_checkpointing": False}
    return {}


def run_trl(cfg: DPOBenchConfig, pairs: list[Any], setting: str, scratch: Path) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from prefline.models.hub import load_causal_lm

    model, tok = load_causal_lm(cfg.model)
    ds = Dataset.from_list([{"prompt": p.prompt,
                             "chosen": [{"role": "assistant", "content": p.chosen}],
                             "rejected": [{"role": "assistant", "content": p.rejected}]}
                            for p in pairs])
    times: list[float] = []

    class StepTimer(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            times.append(time.perf_counter() - self.t0)

    args = DPOConfig(
        output_dir=str(scratch / "out"), per_device_train_batch_size=cfg.pairs_per_step,
        max_length=cfg.max_length, use_cpu=True, max_steps=cfg.steps + 1, learning_rate=LR,
        logging_steps=1, save_strategy="no", report_to=[], dataloader_num_workers=0,
        disable_tqdm=True, seed=0, **trl_settings(setting))
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         peft_config=peft_config, callbacks=[StepTimer()])
    trainer.train()
    seconds = statistics.median(times[1:])
    return {"pairs_per_s": cfg.pairs_per_step / seconds, "step_s": seconds,
            "settings": {"bf16": bool(args.bf16),
                         "precompute_ref_log_probs": bool(args.precompute_ref_log_probs),
                         "gradient_checkpointing": bool(args.gradient_checkpointing)},
            "steps": times[1:]}


def run_side(impl: str, setting: str, cfg: DPOBenchConfig, inputs: Path,
             scratch: Path) -> dict[str, Any]:
    from prefline.formats.load import load_pairs

    # The same pairs every step on both sides: steps + 1 passes over exactly one batch.
    if impl == "prefline":
        return run_prefline(cfg, inputs, scratch)
    return run_trl(cfg, load_pairs(inputs / "pairs.jsonl"), setting, scratch)


def mfu(run: dict[str, Any], machine: dict[str, Any]) -> dict[str, Any]:
    """prefline's model FLOP/s over the matmul peak of the precision it trained in."""
    if "model_flops_per_step" not in run:
        return {}
    peak = machine["bf16_peak_tflops" if run["precision"] == "bf16" else "fp32_peak_tflops"]
    return {"mfu": run["model_flops_per_step"] / run["step_s"] / (peak * 1e12)}


BENCH = Benchmark(
    name="dpo", module="prefline.bench.dpo",
    config=DPOBenchConfig, run_side=run_side, prepare=prepare,
    peers={"trl": ("default", "fastest")}, headline="pairs_per_s", derive=mfu)

if __name__ == "__main__":
    side_main(BENCH)
