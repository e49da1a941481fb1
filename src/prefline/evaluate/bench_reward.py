"""``prefline bench reward --against trl``: reward-model training throughput and accuracy.

Both sides train the same backbone (all-MiniLM-L6-v2) on the same prompt-grouped train split
with the same epochs, batch size, learning rate and max length, each in its own subprocess so
peak RSS (``ru_maxrss``) is its own. pairs/s counts training pairs processed per second of
the training loop only (model loading and tokenisation excluded on both sides).

Known differences, kept on purpose: TRL drops pairs longer than ``max_length`` (prefline
truncates the prompt from the left and keeps them); TRL pools BERT's [CLS] through its
pooler, prefline mean-pools. TRL's default gradient checkpointing is turned off so it is not
charged for recomputation it does not need at this size.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError

HH_NAME = "hh-rlhf-harmless-base-test.first800.jsonl.gz"


def default_data() -> Path:
    """``../shared/data/<HH file>`` relative to the repository (or the working directory)."""
    here = Path(__file__).resolve()
    for root in (*here.parents, Path.cwd(), *Path.cwd().parents):
        cand = root / "shared" / "data" / HH_NAME
        if cand.exists():
            return cand
    raise PreflineError(f"cannot find ../shared/data/{HH_NAME}; pass --data FILE")


def _splits(data: str, test_fraction: float, limit: int | None) -> tuple[list[Any], list[Any]]:
    from prefline.formats.load import load_pairs
    from prefline.train.reward_data import split_by_prompt

    pairs = [p for p in load_pairs(data) if not p.tie][:limit]
    train, _, test = split_by_prompt(pairs, 0.0, test_fraction, seed=0)
    return train, test


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_prefline(args: dict[str, Any]) -> dict[str, Any]:
    """Train with prefline's engine + RewardTask, then held-out pairwise accuracy."""
    from prefline.models.reward import RewardModel
    from prefline.train.engine import TrainConfig, Trainer
    from prefline.train.reward import pair_deltas
    from prefline.train.reward_task import RewardTask, tokenize

    train, test = _splits(args["data"], args["test_fraction"], args.get("limit"))
    model = RewardModel.create(args.get("model"), max_length=args["max_length"])
    items, test_items = tokenize(model, train), tokenize(model, test)
    cfg = TrainConfig(lr=args["lr"], epochs=args["epochs"], batch_size=args["batch_size"],
                      weight_decay=0.01)
    trainer = Trainer(model, RewardTask(model.make_batch), items, cfg,
                      run_dir=Path(args["workdir"]))
    t0 = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    from prefline.base.precision import autocast_context, resolve_precision

    with autocast_context(resolve_precision("auto")):
        acc = float((pair_deltas(model, test_items) > 0).float().mean())
    n = result.steps * args["batch_size"]
    return {"pairs_per_s": n / seconds, "train_seconds": seconds, "pairs_trained": n,
            "accuracy": acc, "n_test": len(test), "truncated": dict(model.builder.counts)}


def run_trl(args: dict[str, Any]) -> dict[str, Any]:
    """Train with TRL's RewardTrainer (fp32, its defaults otherwise), then its eval accuracy."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from prefline.formats.examples import prompt_text
    from prefline.models.backbone import resolve_backbone

    train, test = _splits(args["data"], args["test_fraction"], args.get("limit"))
    name = resolve_backbone(args.get("model"))
    tok = AutoTokenizer.from_pretrained(name)
    if tok.eos_token is None:  # TRL appends EOS to every text; BERT calls it [SEP]
        tok.eos_token = tok.sep_token
    model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id

    def rows(pairs: list[Any]) -> Dataset:
        return Dataset.from_list([{"prompt": prompt_text(p.prompt) + "\n", "chosen": p.chosen,
                                   "rejected": p.rejected} for p in pairs])

    cfg = RewardConfig(output_dir=args["workdir"], per_device_train_batch_size=args["batch_size"],
                       per_device_eval_batch_size=args["batch_size"],
                       num_train_epochs=args["epochs"], learning_rate=args["lr"],
                       max_length=args["max_length"], bf16=False, use_cpu=True, report_to=[],
                       save_strategy="no", gradient_checkpointing=False, logging_steps=10**6,
                       disable_tqdm=True)
    trainer = RewardTrainer(model=model, args=cfg, train_dataset=rows(train),
                            eval_dataset=rows(test), processing_class=tok)
    t0 = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - t0
    metrics = trainer.evaluate()
    n = int(out.global_step) * args["batch_size"]
    return {"pairs_per_s": n / seconds, "train_seconds": seconds, "pairs_trained": n,
            "accuracy": float(metrics["eval_accuracy"]),
            "n_test": len(trainer.eval_dataset),  # type: ignore[arg-type]
            "n_train_after_filter": len(trainer.train_dataset)}  # type: ignore[arg-type]


def _child(side: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run one side in a fresh interpreter so its peak RSS is its own."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{side}-") as tmp:
        payload = json.dumps({**args, "workdir": tmp})
        proc = subprocess.run([sys.executable, "-m", "prefline.evaluate.bench_reward", side,
                               payload], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise PreflineError(f"the {side} benchmark run failed: {' | '.join(tail)}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def bench_reward(data: str | None = None, *, against: str = "trl", epochs: int = 1,
                 batch_size: int = 8, max_length: int = 512, lr: float = 5e-5,
                 test_fraction: float = 0.2, limit: int | None = None,
                 model: str | None = None) -> dict[str, Any]:
    """``{"prefline": {...}, "trl": {...}, "speedup": prefline/TRL pairs per second}``."""
    if against not in ("trl", "none"):
        raise PreflineError("--against must be trl or none", field="against")
    args = {"data": str(data or default_data()), "epochs": epochs, "batch_size": batch_size,
            "max_length": max_length, "lr": lr, "test_fraction": test_fraction, "limit": limit,
            "model": model}
    out: dict[str, Any] = {"settings": args, "prefline": _child("prefline", args)}
    if against == "trl":
        out["trl"] = _child("trl", args)
        out["speedup"] = out["prefline"]["pairs_per_s"] / out["trl"]["pairs_per_s"]
    return out


def main(argv: list[str]) -> None:
    side, args = argv[0], json.loads(argv[1])
    result = (run_prefline if side == "prefline" else run_trl)(args)
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
