"""A/B of prefline's reward-training forward + backward (issue 17, docs/benchmarks/reward.md).

The first N usable pairs of the shared HH-RLHF slice, tokenised by the bench's model
(embedded all-MiniLM-L6-v2, max length 512), in micro-batches of 8 pairs through
``RewardTask.collate`` + ``RewardTask.loss`` and ``backward`` (no optimizer step), for each
variant in turn, repetitions interleaved. Prints CPU seconds (``time.process_time``), wall
seconds, the summed loss and the head's gradient norm (equal across variants in eval mode:
the variants compute the same thing), and the padded tokens. Variants, comma-separated:

- ``seg``: per-segment attention, one unpadded row (the default path);
- ``mask``: the block-diagonal 4-D mask over first-fit rows (``RewardModel.per_segment`` off);
- suffix ``-nodrop``: eval mode (no hidden/head dropout); ``-fp32``: no bf16 autocast.

``THREADS`` (default: torch's) sets torch's thread count; on a busy machine one thread gives
the most stable CPU times (with two, time waiting for a descheduled thread counts too)::

    THREADS=1 nice -n 10 .venv/bin/python bench/ab_reward.py 64 3 mask,seg
    .venv/bin/python bench/ab_reward.py 64 3 mask,seg,mask-nodrop,seg-nodrop   # quiet machine
"""

from __future__ import annotations

import os
import resource
import sys
import time

import torch

from prefline.base.precision import autocast_context
from prefline.bench.harness import shared_data
from prefline.formats.load import load_pairs
from prefline.models.reward import RewardModel
from prefline.train.reward_task import Item, RewardTask, tokenize


def run(model: RewardModel, items: list[Item], variant: str) -> tuple[float, float, float, float, int]:
    model.train(mode="nodrop" not in variant)
    model.per_segment = variant.startswith("seg")
    task = RewardTask(model.make_batch)
    dtype = None if "fp32" in variant else torch.bfloat16
    torch.manual_seed(0)
    model.zero_grad(set_to_none=True)
    cpu, wall, loss_sum, tokens = time.process_time(), time.perf_counter(), 0.0, 0
    for s in range(0, len(items), 8):
        batch = task.collate(items[s:s + 8])
        tokens += batch.inputs.padded_tokens
        with autocast_context(dtype):
            loss, count, _ = task.loss(model, batch)
        (loss / count).backward()
        loss_sum += float(loss.detach())
    assert model.head.weight.grad is not None
    return (time.process_time() - cpu, time.perf_counter() - wall, loss_sum,
            float(model.head.weight.grad.norm()), tokens)


def main(n: int, reps: int, variants: list[str]) -> None:
    if "THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["THREADS"]))
    pairs = [p for p in load_pairs(shared_data()) if not p.tie and p.chosen and p.rejected][:n]
    model = RewardModel.create(None, max_length=512, seed=0)
    items = tokenize(model, pairs)
    best: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(reps):
        for v in variants:
            cpu, wall, loss, grad, tokens = run(model, items, v)
            best[v].append(cpu)
            print(f"rep{r} {v:14s} cpu {cpu:6.2f}s wall {wall:6.2f}s loss {loss:.5f} "
                  f"head-grad {grad:.5f} padded-tokens {tokens}", flush=True)
    for v, times in best.items():
        print(f"{v:14s} best cpu {min(times):.2f}s  all {[round(t, 2) for t in times]}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(","))
