"""``prefline bench grpo --against trl``: prefline's GRPO step vs TRL's GRPOTrainer, same run.

Both sides train the same policy (default: the embedded SmolLM2-135M-Instruct, converted
once by the parent) on the same prompts (the first ``prompts_per_step`` bundled train
prompts, written once by the parent, chat-templated by each side), ``k`` completions per
prompt of at most ``max_new_tokens`` tokens at temperature 1, the same Python reward
(:func:`prefline.train.rl_rewards.lowercase_share`), the same KL settings (β = ``beta``,
k3 in the loss, weighted by the importance ratio), the same loss (token ratios clipped at
0.2/0.28, per-completion mean: TRL's ``loss_type="grpo"``), lr 1e-6, one update per
generation. Every optimizer step generates its completions and trains on them on both
sides, so a step time is a whole step: generation, scoring, reference log-probs and update.
Both sides run on the CPU (prefline's online RL stages do not place models on a GPU yet).

One warm-up step, then ``steps`` timed steps; a run reports the median step, as samples
(completions) per second. Peak RSS comes from the harness. TRL runs in its defaults (bf16
autocast where the CPU has it, as prefline's ``precision=auto``). Completion lengths differ
between the sides (different random streams, and either may stop early), so each side also
reports its mean completion length; compare tokens/s where lengths differ much.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.bench.harness import Benchmark, side_main

LR = 1e-6
REWARD = "prefline.train.rl_rewards:lowercase_share"


@dataclass(frozen=True)
class GRPOBenchConfig:
    """The GRPO workload both sides run."""

    model: str | None = None
    """Policy: Hub id or folder; None = the embedded SmolLM2-135M-Instruct."""
    prompts_per_step: int = 4
    """Prompts per optimizer step (each with k completions)."""
    k: int = 4
    """Completions per prompt."""
    max_new_tokens: int = 64
    """Most new tokens per completion (at most 64 for the recorded benchmark)."""
    beta: float = 0.04
    """KL weight (k3, in the loss) on both sides."""
    steps: int = 3
    """Timed optimizer steps per run, after one warm-up step."""

    def __post_init__(self) -> None:
        for name in ("prompts_per_step", "steps", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise PreflineError(f"{name} must be at least 1", field=name)
        if self.k < 2:
            raise PreflineError("k must be at least 2 (GRPO compares a prompt's completions)",
                                field="k")


def prepare(cfg: GRPOBenchConfig, inputs: Path) -> dict[str, Any]:
    """Write the prompts to ``inputs/prompts.jsonl``; convert the default policy once."""
    from prefline.data import load_prompts

    rows = load_prompts("train")[: cfg.prompts_per_step]
    with (inputs / "prompts.jsonl").open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"prompt": r["prompt"]}) + "\n")
    if cfg.model is None:
        from prefline.models.hub import default_policy_dir

        default_policy_dir()  # GGUF -> safetensors once, outside every timed subprocess
    return {"prompts": len(rows), "samples_per_step": len(rows) * cfg.k, "reward": REWARD}


def run_prefline(cfg: GRPOBenchConfig, inputs: Path, scratch: Path) -> dict[str, Any]:
    from prefline.base.progress import Reporter
    from prefline.store.context import Context, Store
    from prefline.train.rl import run
    from prefline.train.rl_config import GRPOConfig, MonitorConfig, RewardSource, RolloutConfig
    from prefline.train.train_config import TrainConfig

    # No over-optimisation monitor: TRL's GRPOTrainer runs none (like for like).
    train = TrainConfig(lr=LR, batch_size=cfg.prompts_per_step, max_steps=cfg.steps + 1,
                        warmup_ratio=0.0, schedule="constant", save_every_minutes=None)
    stage = GRPOConfig(
        model=cfg.model, beta=cfg.beta, reward=RewardSource(reward_fn=REWARD), train=train,
        monitor=MonitorConfig(monitor_every=0),
        rollout=RolloutConfig(prompts=str(inputs / "prompts.jsonl"), k=cfg.k,
                              max_new_tokens=cfg.max_new_tokens))
    ctx = Context(store=Store.open(f"sqlite:///{scratch / 'store.db'}"), run_dir=scratch / "out",
                  progress=Reporter(False))
    timed = run(stage, ctx).history[1:]
    seconds = statistics.median(h["seconds"] for h in timed)
    return {"samples_per_s": cfg.prompts_per_step * cfg.k / seconds, "step_s": seconds,
            "completion_tokens": statistics.mean(h["length"] for h in timed),
            "steps": [h["seconds"] for h in timed]}


def run_trl(cfg: GRPOBenchConfig, inputs: Path, scratch: Path) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from prefline.models.hub import resolve_model_path
    from prefline.train.rl_rewards import lowercase_share

    prompts = [json.loads(x)["prompt"] for x in (inputs / "prompts.jsonl").read_text().splitlines()]
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts])
    times: list[float] = []
    lengths: list[float] = []

    class StepTimer(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            times.append(time.perf_counter() - self.t0)

        def on_log(self, *args: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    def reward(prompts: list[Any], completions: list[Any], **kw: Any) -> list[float | None]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return list(lowercase_share(prompts, texts))

    args = GRPOConfig(
        output_dir=str(scratch / "out"), per_device_train_batch_size=len(prompts) * cfg.k,
        num_generations=cfg.k, max_completion_length=cfg.max_new_tokens, beta=cfg.beta,
        loss_type="grpo", epsilon=0.2, epsilon_high=0.28, temperature=1.0,
        use_cpu=True, max_steps=cfg.steps + 1, learning_rate=LR,
        logging_steps=1, save_strategy="no", report_to=[], dataloader_num_workers=0,
        disable_tqdm=True, seed=0)
    trainer = GRPOTrainer(model=resolve_model_path(cfg.model), reward_funcs=[reward], args=args,
                          train_dataset=ds, callbacks=[StepTimer()])
    trainer.train()
    seconds = statistics.median(times[1:])
    return {"samples_per_s": len(prompts) * cfg.k / seconds, "step_s": seconds,
            "completion_tokens": statistics.mean(lengths[1:]) if len(lengths) > 1 else None,
            "settings": {"bf16": bool(args.bf16), "loss_type": args.loss_type,
                         "beta": args.beta},
            "steps": times[1:]}


def run_side(impl: str, setting: str, cfg: GRPOBenchConfig, inputs: Path,
             scratch: Path) -> dict[str, Any]:
    if impl == "prefline":
        return run_prefline(cfg, inputs, scratch)
    return run_trl(cfg, inputs, scratch)


BENCH = Benchmark(
    name="grpo", module="prefline.bench.grpo", config=GRPOBenchConfig, run_side=run_side,
    prepare=prepare, peers={"trl": ("default",)}, headline="samples_per_s")

if __name__ == "__main__":
    side_main(BENCH)
