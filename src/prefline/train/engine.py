"""The one training loop: reward and policy training plug a :class:`Task` into it.

Why one loop: batching, precision, accumulation, checkpoints, logging and DDP are where
subtle bugs live, so they are written and tested once. A Task only says how to collate its
examples and how to compute a *summed* loss; the engine divides by the global example count
of the optimizer step, which makes gradient accumulation equal to one large batch and
2 processes x b equal to 1 process x 2b.
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from prefline.base.distributed import barrier, init_distributed
from prefline.base.errors import PreflineError
from prefline.base.precision import autocast_context, resolve_precision
from prefline.base.progress import Reporter
from prefline.train import checkpoint as ckpt
from prefline.train.train_config import TrainConfig

__all__ = ["Task", "TrainConfig", "TrainResult", "Trainer", "unwrap"]


class Task(Protocol):
    """What a trainer supplies: batching and a summed loss."""

    def collate(self, examples: Sequence[Any]) -> Any: ...

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, float, dict[str, float]]:
        """(sum of per-example losses, example count, metric sums; "tokens" is a count)."""
        ...


# Optional on a Task: ``prepare_step(model, batches, all_reduce)``, called once per optimizer
# step before any micro-batch loss, without grad, with every micro-batch of the step and a
# function that sums a list of floats over processes. A loss that depends on a statistic of
# the whole step (KTO's reference point z0) computes it here, so gradient accumulation and
# 2 processes stay exactly equal to one large batch.


@dataclass
class TrainResult:
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)


def unwrap(model: nn.Module) -> nn.Module:
    """The inner module of a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _all_reduce(values: list[float], world: int) -> list[float]:
    if world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def _lr_lambda(cfg: TrainConfig, total: int) -> Callable[[int], float]:
    warm = int(round(cfg.warmup_ratio * total))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / max(1, warm)
        if cfg.schedule == "constant":
            return 1.0
        frac = (step - warm) / max(1, total - warm)
        frac = min(1.0, frac)
        return 0.5 * (1 + math.cos(math.pi * frac)) if cfg.schedule == "cosine" else 1 - frac

    return f


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # Biases and normalisation weights are 1-D: decaying them only hurts.
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    if not decay and not no_decay:
        raise PreflineError("the model has no trainable parameters")
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    """Runs ``task`` over ``examples`` on ``model`` with ``cfg``; see module docstring."""

    def __init__(self, model: nn.Module, task: Task, examples: Sequence[Any], cfg: TrainConfig,
                 *, run_dir: Path, progress: Reporter | None = None,
                 evaluate: Callable[[nn.Module], dict[str, float]] | None = None) -> None:
        if len(examples) == 0:
            raise PreflineError("no training examples")
        self.cfg, self.task, self.examples, self.evaluate = cfg, task, examples, evaluate
        self.rank, self.world = init_distributed()
        # Only rank 0 draws a bar; None means no bar at all (tests, benchmarks).
        self.progress = progress if progress is not None and self.rank == 0 else Reporter(False)
        self.out = Path(run_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.dtype = resolve_precision(cfg.precision)
        torch.manual_seed(cfg.seed)
        self.model = model
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(model)
        self.per_step = cfg.batch_size * cfg.grad_accum * self.world
        self.steps_per_epoch = max(1, len(examples) // self.per_step)
        if len(examples) < self.per_step:
            self.steps_per_epoch = 1
        self.total = cfg.max_steps or self.steps_per_epoch * cfg.epochs
        self.opt = torch.optim.AdamW(_param_groups(unwrap(model), cfg.weight_decay), lr=cfg.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _lr_lambda(cfg, self.total))
        self.step = 0
        self.best: dict[str, Any] | None = None
        self.bad_evals = 0
        self.result = TrainResult(steps=0)

    # ----- data order -------------------------------------------------------------------
    def _step_examples(self, step: int) -> list[Any]:
        """This process's examples for optimizer step ``step`` (deterministic in the seed)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = self._epoch_order(epoch)
        idx = order[k * self.per_step:(k + 1) * self.per_step]
        if len(idx) < self.per_step:  # a tiny dataset: wrap around rather than drop
            idx = (idx + order * (self.per_step // len(order) + 1))[: self.per_step]
        share = self.cfg.batch_size * self.cfg.grad_accum
        mine = idx[self.rank * share:(self.rank + 1) * share]
        return [self.examples[i] for i in mine]

    @functools.lru_cache(maxsize=2)  # noqa: B019 - one Trainer per run; freed with it
    def _epoch_order(self, epoch: int) -> list[int]:
        """The seeded permutation of example indices for ``epoch`` (computed once per epoch)."""
        order = list(range(len(self.examples)))
        random.Random(self.cfg.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def _micro_batches(self, step: int) -> Iterator[Any]:
        items = self._step_examples(step)
        bs = self.cfg.batch_size
        for i in range(0, len(items), bs):
            yield self.task.collate(items[i:i + bs])

    # ----- one optimizer step -----------------------------------------------------------
    def _train_step(self) -> dict[str, Any]:
        self.model.train()
        batches = list(self._micro_batches(self.step))
        prepare = getattr(self.task, "prepare_step", None)
        if prepare is not None:
            with torch.no_grad(), autocast_context(self.dtype):
                prepare(unwrap(self.model), batches, lambda v: _all_reduce(v, self.world))
        # Global example count first, so every micro-loss is scaled by the same 1/N.
        counts = [float(self._count(b)) for b in batches]
        total = _all_reduce([sum(counts)], self.world)[0]
        sums: dict[str, float] = {}
        loss_sum = 0.0
        self.opt.zero_grad(set_to_none=True)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            sync = nullcontext() if last or self.world == 1 else self.model.no_sync()  # type: ignore[operator]
            with sync, autocast_context(self.dtype):
                loss, _n, metrics = self.task.loss(self.model, batch)
            scaled = loss.float() * (self.world / total)
            with sync:
                scaled.backward()
            loss_sum += float(loss.detach())
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        grad_norm = self._clip()
        self.opt.step()
        self.sched.step()
        keys = sorted(sums)
        reduced = _all_reduce([loss_sum] + [sums[k] for k in keys], self.world)
        rec: dict[str, Any] = {"loss": reduced[0] / total, "grad_norm": grad_norm,
                               "lr": self.sched.get_last_lr()[0], "examples": total}
        for k, v in zip(keys, reduced[1:], strict=True):
            rec[k] = v if k == "tokens" else v / total
        return rec

    def _count(self, batch: Any) -> float:
        count = getattr(self.task, "count", None)
        if count is not None:
            return float(count(batch))
        if isinstance(batch, dict) and "n" in batch:
            return float(batch["n"])
        raise PreflineError("Task batches must carry 'n' or the Task must define count(batch)")

    def _clip(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if not params:
            return 0.0
        max_norm = self.cfg.max_grad_norm or float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    # ----- evaluation / early stopping --------------------------------------------------
    def _maybe_eval(self, force: bool = False) -> bool:
        """Run evaluate() when due; returns True when early stopping says stop."""
        cfg = self.cfg
        due = cfg.eval_every and self.step % cfg.eval_every == 0
        end_epoch = self.step % self.steps_per_epoch == 0
        if self.evaluate is None or not (due or force or (cfg.eval_every and end_epoch)):
            return False
        unwrap(self.model).eval()
        with torch.no_grad(), autocast_context(self.dtype):
            metrics = dict(self.evaluate(unwrap(self.model)))
        metrics["step"] = self.step
        self.result.evals.append(metrics)
        self._log({"eval": metrics, "step": self.step})
        value = metrics.get(cfg.early_stopping_metric)
        if value is None:
            return False
        if self.best is None or value > self.best[cfg.early_stopping_metric]:
            self.best = metrics
            self.bad_evals = 0
            if self.rank == 0:
                ckpt.save_weights(unwrap(self.model), self.out / "checkpoints" / "best")
            return False
        self.bad_evals += 1
        return bool(cfg.early_stopping_patience and self.bad_evals >= cfg.early_stopping_patience)

    # ----- logging ----------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with open(self.out / "train_log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=float) + "\n")

    def _state(self) -> dict[str, Any]:
        return {"step": self.step, "best": self.best, "bad_evals": self.bad_evals,
                "config": asdict(self.cfg)}

    # ----- main loop --------------------------------------------------------------------
    def fit(self) -> TrainResult:
        if self.cfg.resume:
            state = ckpt.load_latest(self.out, unwrap(self.model), self.opt, self.sched)
            if state is not None:
                self.step, self.best = state["step"], state.get("best")
                self.bad_evals = state.get("bad_evals", 0)
        elif self.rank == 0 and (self.out / "train_log.jsonl").exists():
            (self.out / "train_log.jsonl").unlink()
        with self.progress.bar(self.total, "training", start=self.step) as bar:
            stopped = False
            while self.step < self.total and not stopped:
                t0 = time.perf_counter()
                rec = self._train_step()
                self.step += 1
                dt = time.perf_counter() - t0
                rec.update(step=self.step, epoch=(self.step - 1) // self.steps_per_epoch,
                           seconds=dt, examples_per_s=rec["examples"] / dt)
                if "tokens" in rec:
                    rec["tokens_per_s"] = rec["tokens"] / dt
                self.result.history.append(rec)
                self._log(rec)
                bar.update(rec)
                stopped = self._maybe_eval()
                if self.cfg.save_every and self.step % self.cfg.save_every == 0:
                    self._save()
        if self.evaluate is not None and not self.result.evals:
            self._maybe_eval(force=True)
        self._save()
        self._restore_best()
        self.result.steps, self.result.best = self.step, self.best
        return self.result

    def _save(self) -> None:
        if self.rank == 0:
            ckpt.save_checkpoint(self.out, unwrap(self.model), self.opt, self.sched, self._state())
        barrier()

    def _restore_best(self) -> None:
        best_dir = self.out / "checkpoints" / "best"
        if self.best is not None and self.cfg.early_stopping_patience and best_dir.exists():
            barrier()
            ckpt.load_weights(unwrap(self.model), best_dir)
