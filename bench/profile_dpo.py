"""Profile one prefline DPO optimizer step at ``prefline bench dpo``'s size (issue 17).

The step is built from prefline's own pieces, as the trainer runs it: ``encode_pairs`` ->
``DPOTask.collate`` -> ``SequenceLogps`` + ``DPOTask.loss`` under bf16 autocast -> backward ->
``clip_grad_norm_`` -> fused AdamW. The first 8 usable pairs of the shared HH-RLHF slice,
max length 256, the embedded SmolLM2-135M-Instruct; reference log-probs are constants (the
benchmark precomputes them outside the step). One warm-up step, then either the
``torch.profiler`` table (``--prof``, top rows by self CPU time) or ``STEPS`` timed steps
(CPU seconds per step, median)::

    OMP_NUM_THREADS=1 python bench/profile_dpo.py --prof          # the table in dpo.md
    OMP_NUM_THREADS=1 python bench/profile_dpo.py --lora          # timed LoRA steps
    ATTN=eager|sdpa|math ... --prof                               # another attention path

Needs ``../shared/data`` (the benchmark's data), like the benchmark itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import resource
import statistics
import sys
import time
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from prefline.base.precision import autocast_context
from prefline.bench.harness import shared_data
from prefline.formats.load import load_pairs
from prefline.models.hub import load_causal_lm
from prefline.train.dpo import _with_lora
from prefline.train.logprobs import SequenceLogps
from prefline.train.policy_batch import encode_pairs
from prefline.train.policy_config import DPOConfig
from prefline.train.policy_tasks import DPOTask
from prefline.train.train_config import TrainConfig


def build(lora: bool, attn: str | None) -> tuple[Any, Any, Any, Any]:
    """(log-prob module, task, optimizer, batch) for the benchmark's first 8 pairs."""
    torch.manual_seed(0)
    pairs = [p for p in load_pairs(shared_data()) if not p.tie and p.chosen != p.rejected][:8]
    lm, tok = load_causal_lm(None)
    cfg = DPOConfig(lora=lora, max_length=256, train=TrainConfig(lr=1e-6, batch_size=8))
    if lora:
        lm = _with_lora(cfg, lm)
    if attn in ("eager", "sdpa"):
        lm.config._attn_implementation = attn
    enc, _ = encode_pairs(pairs, tok, 256)
    enc = [dataclasses.replace(e, ref=(-100.0, -100.0)) for e in enc]
    fn = SequenceLogps(lm)
    task = DPOTask(cfg, tok.pad_token_id or 0)
    opt = torch.optim.AdamW([p for p in fn.parameters() if p.requires_grad], lr=1e-6,
                            fused=True)
    batch = task.collate(enc)
    print("rows", tuple(batch.input_ids.shape), "tokens", batch.tokens,
          "scored", int(batch.lengths.sum()), file=sys.stderr)
    return fn, task, opt, batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lora", action="store_true", help="LoRA r=16 on all linear layers")
    ap.add_argument("--prof", action="store_true", help="print the torch.profiler table")
    args = ap.parse_args()
    attn = os.environ.get("ATTN")
    fn, task, opt, batch = build(args.lora, attn)
    params = [p for p in fn.parameters() if p.requires_grad]

    def step() -> float:
        t0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        kernel = sdpa_kernel(SDPBackend.MATH) if attn == "math" else contextlib.nullcontext()
        with autocast_context(torch.bfloat16), kernel:
            loss, n, _ = task.loss(fn, batch)
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return time.process_time() - t0

    fn.train()
    step()  # warm-up: one-time set-up is not profiled
    if args.prof:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as p:
            step()
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
        return
    times = [step() for _ in range(int(os.environ.get("STEPS", "3")))]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print("rss MB", rss, "CPU s per step", [round(t, 2) for t in times],
          "median", round(statistics.median(times), 3))


if __name__ == "__main__":
    main()
