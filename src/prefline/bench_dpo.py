"""``prefline bench dpo --against trl``: prefline's DPO step vs TRL's DPOTrainer, same run.

Both train SmolLM2-135M-Instruct (the embedded default, converted once) on the first HH
pairs of ``../shared/data``, 8 pairs per optimizer step, max length 256, full fine-tuning
(and a LoRA row). TRL runs in its fastest CPU setting: bf16, reference log-probs
precomputed, no gradient checkpointing. Each run is its own subprocess, so peak RSS
(``ru_maxrss``) is that run's alone; runs go one after another, never concurrently. Step
times exclude one warm-up step and reference precomputation (both sides precompute);
we report the median. MFU = model FLOP/s (6·params·tokens for full training, 4· for LoRA,
prefline's actual packed tokens) over a bf16 matmul peak measured in the same process.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError

PAIRS_PER_STEP = 8
MAX_LENGTH = 256
HH_NAME = "hh-rlhf-harmless-base-test.first800.jsonl.gz"


def default_data() -> Path:
    """``../shared/data`` relative to the working directory, then to the checkout."""
    for root in (Path.cwd().parent, Path(__file__).resolve().parents[3]):
        path = root / "shared" / "data" / HH_NAME
        if path.exists():
            return path
    raise PreflineError(f"HH pairs not found in ../shared/data ({HH_NAME}); pass --data FILE")


def bf16_matmul_peak(size: int = 2048, reps: int = 5) -> float:
    """Best observed FLOP/s of a square bf16 matmul (the denominator of MFU)."""
    import torch

    a = torch.randn(size, size, dtype=torch.bfloat16)
    b = torch.randn(size, size, dtype=torch.bfloat16)
    a @ b  # warm-up: kernel selection
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _bench_pairs(data: Path, steps: int) -> list[Any]:
    from prefline.formats.load import load_pairs

    pairs = [p for p in load_pairs(data) if not p.tie and p.chosen != p.rejected]
    need = PAIRS_PER_STEP * (steps + 1)
    if len(pairs) < need:
        raise PreflineError(f"the benchmark needs {need} pairs", path=str(data))
    return pairs[:need]


def _model_flops(model: Any, rows: list[dict[str, Any]], lora: bool) -> float:
    """6 (or 4 under LoRA) × body params × packed tokens + same × head params × scored tokens."""
    head = model.get_output_embeddings().weight.numel()
    body = sum(p.numel() for n, p in model.named_parameters()
               if "embed" not in n and "lm_head" not in n and "lora_" not in n)
    tokens = sum(r["tokens"] for r in rows)
    scored = sum(r["scored"] for r in rows)
    return (4 if lora else 6) * (body * tokens + head * scored)


def worker_prefline(data: Path, steps: int, lora: bool, out: Path) -> dict[str, Any]:
    from prefline.models.hub import load_causal_lm
    from prefline.train.dpo import DPOConfig, train_dpo
    from prefline.train.engine import TrainConfig

    peak = bf16_matmul_peak()
    model, tok = load_causal_lm(None)
    cfg = DPOConfig(max_length=MAX_LENGTH, lora=lora, eval_fraction=0.0)
    train = TrainConfig(lr=1e-6, batch_size=PAIRS_PER_STEP, max_steps=steps + 1,
                        precision="bf16", warmup_ratio=0.0)
    res = train_dpo(_bench_pairs(data, steps), cfg, train, run_dir=out, model=model,
                    tokenizer=tok, register=False)
    timed = res.history[1:]
    seconds = statistics.median(h["seconds"] for h in timed)
    # "response_tokens" is averaged per pair by the engine; "tokens" is summed per step.
    rows = [{"tokens": h["tokens"], "scored": h["response_tokens"] * h["examples"]}
            for h in timed]
    flops = _model_flops(res.policy, rows, lora) / len(rows)
    return {"pairs_per_s": PAIRS_PER_STEP / seconds, "step_s": seconds,
            "tokens_per_step": statistics.median(r["tokens"] for r in rows),
            "peak_rss_mb": _peak_rss_mb(), "mfu": flops / seconds / peak,
            "bf16_peak_tflops": peak / 1e12, "steps": [h["seconds"] for h in timed]}


def worker_trl(data: Path, steps: int, lora: bool, out: Path) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from prefline.models.hub import load_causal_lm

    model, tok = load_causal_lm(None)
    pairs = _bench_pairs(data, steps)
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
        output_dir=str(out), per_device_train_batch_size=PAIRS_PER_STEP, max_length=MAX_LENGTH,
        bf16=True, precompute_ref_log_probs=True, gradient_checkpointing=False, use_cpu=True,
        max_steps=steps + 1, learning_rate=1e-6, logging_steps=1, save_strategy="no",
        report_to=[], dataloader_num_workers=0, disable_tqdm=True, seed=0)
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         peft_config=peft_config, callbacks=[StepTimer()])
    trainer.train()
    seconds = statistics.median(times[1:])
    return {"pairs_per_s": PAIRS_PER_STEP / seconds, "step_s": seconds,
            "peak_rss_mb": _peak_rss_mb(), "steps": times[1:]}


def _spawn(impl: str, data: Path, steps: int, lora: bool, threads: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-dpo-{impl}-") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "prefline.bench_dpo", impl, str(data), str(steps),
               "lora" if lora else "full", str(result)]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not result.exists():
            tail = (proc.stderr or proc.stdout)[-1500:]
            raise PreflineError(f"the {impl} benchmark run failed: {tail}")
        return dict(json.loads(result.read_text()))


def run_benchmark(against: str = "trl", data: str | None = None, steps: int = 3,
                  lora: bool = True, progress: bool = True, threads: int | None = None,
                  ) -> dict[str, Any]:
    """Run prefline and the peer (full FT, then LoRA) and return the comparison.

    ``threads`` sets OMP_NUM_THREADS for both sides (None: torch's default, one per core).
    Each finished run is also written to ``cache_dir()/bench-dpo/`` so a long benchmark
    that is interrupted keeps what it measured.
    """
    if against != "trl":
        raise PreflineError("only --against trl is supported", field="against")
    if steps < 3:
        raise PreflineError("use at least 3 timed steps", field="steps")
    path = Path(data) if data else default_data()
    from prefline.models.hub import default_policy_dir

    default_policy_dir()  # convert the GGUF once, outside every timed subprocess
    out: dict[str, Any] = {"setup": {"model": "SmolLM2-135M-Instruct", "pairs_per_step":
                                     PAIRS_PER_STEP, "max_length": MAX_LENGTH,
                                     "timed_steps": steps, "data": str(path),
                                     "threads": threads or "default"}}
    from prefline.base.paths import cache_dir

    partial = cache_dir() / "bench-dpo"
    partial.mkdir(parents=True, exist_ok=True)
    modes = [False, True] if lora else [False]
    for mode in modes:
        row: dict[str, Any] = {}
        for impl in ("prefline", "trl"):
            if progress:
                print(f"running {impl} ({'lora' if mode else 'full'})...", file=sys.stderr)
            row[impl] = _spawn(impl, path, steps, mode, threads)
            name = f"{impl}-{'lora' if mode else 'full'}-t{threads or 0}.json"
            (partial / name).write_text(json.dumps(row[impl]))
        row["speedup"] = row["prefline"]["pairs_per_s"] / row["trl"]["pairs_per_s"]
        row["rss_ratio"] = row["prefline"]["peak_rss_mb"] / row["trl"]["peak_rss_mb"]
        if mode:
            out["lora"] = row
        else:
            out.update(row)
    return out


def render_table(result: dict[str, Any]) -> str:
    lines = ["| run | prefline pairs/s | TRL pairs/s | speedup | prefline RSS MB | TRL RSS MB "
             "| RSS ratio | prefline MFU |", "|---|---|---|---|---|---|---|---|"]
    for name, row in (("full", result), ("lora", result.get("lora"))):
        if not row:
            continue
        p, t = row["prefline"], row["trl"]
        lines.append(f"| {name} | {p['pairs_per_s']:.2f} | {t['pairs_per_s']:.2f} | "
                     f"{row['speedup']:.1f}x | {p['peak_rss_mb']:.0f} | {t['peak_rss_mb']:.0f} | "
                     f"{row['rss_ratio']:.2f} | {p['mfu']:.1%} |")
    return "\n".join(lines)


def _main(argv: list[str]) -> None:
    impl, data, steps, mode, result = argv
    if os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    worker = worker_prefline if impl == "prefline" else worker_trl
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        out = worker(Path(data), int(steps), mode == "lora", Path(tmp))
    Path(result).write_text(json.dumps(out))


if __name__ == "__main__":
    _main(sys.argv[1:])
