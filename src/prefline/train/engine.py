"""The one training loop: reward and policy training plug a :class:`Task` into it.

Why one loop: batching, precision, accumulation, checkpoints, logging and DDP are where
subtle bugs live, so they are written and tested once. Devices, DDP and FSDP2 too: the
model and every batch go to the run's device (``device``; the CPU by default, untouched and
unhooked), and under torchrun ``strategy`` ddp wraps the model while fsdp shards it
(:mod:`prefline.train.fsdp`). A Task only says how to collate its
examples and how to compute a *summed* loss; the engine divides by the global example count
of the optimizer step, which makes gradient accumulation equal to one large batch and
2 processes x b equal to 1 process x 2b.

Interrupts and resume (docs/runs.md): an optimizer step either happens completely (weights,
optimizer, schedule, step count, log line) or not at all, because SIGINT/SIGTERM are held
while it commits. On an interrupt rank 0 saves a checkpoint of the last completed step and
the exception goes on up (the command line exits 130/143). ``resume`` continues from the
latest checkpoint after checking that the run's fingerprint (stage settings, data hash, base
model) matches it, so a resumed run equals an uninterrupted one or is refused.
"""

from __future__ import annotations

import functools
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from prefline.base import interrupts
from prefline.base.distributed import barrier, init_distributed, to_device
from prefline.base.errors import PreflineError
from prefline.base.precision import autocast_context, grad_scaler, resolve_precision
from prefline.base.progress import Reporter
from prefline.base.tracking import Tracker, open_tracker
from prefline.train import checkpoint as ckpt
from prefline.train import fsdp
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


def _all_reduce(values: list[float], world: int,
                device: torch.device | None = None) -> list[float]:
    if world == 1:
        return values
    import torch.distributed as dist

    # NCCL reduces only tensors on the process's GPU; gloo those on the CPU.
    t = torch.tensor(values, dtype=torch.float64, device=device)
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
    """Runs ``task`` over ``examples`` on ``model`` with ``cfg``; see module docstring.

    ``fingerprint`` is what the stage says determines its result beyond ``cfg`` (its
    settings under ``config``, the data hash under ``data``, the base model under
    ``model``); it is saved in every checkpoint and compared on resume. ``run_folder`` is
    the folder ``--out`` names when ``run_dir`` is inside it (the interrupt line uses it).
    ``device`` is where the model and batches go (default the CPU; a stage passes
    ``ctx.torch_device``). After :meth:`fit`, :meth:`plain_model` is the trained model outside
    DDP/FSDP (every rank calls it).
    """

    def __init__(self, model: nn.Module, task: Task, examples: Sequence[Any], cfg: TrainConfig,
                 *, run_dir: Path, progress: Reporter | None = None,
                 evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
                 fingerprint: dict[str, Any] | None = None,
                 run_folder: Path | None = None,
                 device: torch.device | str | None = None) -> None:
        if len(examples) == 0:
            raise PreflineError("no training examples")
        self.cfg, self.task, self.examples, self.evaluate = cfg, task, examples, evaluate
        self.device = torch.device(device if device is not None else "cpu")
        self.rank, self.world = init_distributed(str(self.device))
        # Only rank 0 draws a bar; None means no bar at all (tests, benchmarks).
        self.progress = progress if progress is not None and self.rank == 0 else Reporter(False)
        self.out = Path(run_dir)
        self.run_folder = Path(run_folder) if run_folder is not None else self.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.dtype = resolve_precision(cfg.precision, self.device)
        self.scaler = grad_scaler(self.dtype, self.device)
        torch.manual_seed(cfg.seed)
        self.model, self._skeleton = fsdp.wrap(model, cfg, self.device, self.world)
        self.fsdp = self._skeleton is not None
        self.per_step = cfg.batch_size * cfg.grad_accum * self.world
        self.steps_per_epoch = max(1, len(examples) // self.per_step)
        if len(examples) < self.per_step:
            self.steps_per_epoch = 1
        self.total = cfg.max_steps or self.steps_per_epoch * cfg.epochs
        # The length the LR schedule was built for (``total`` may be lowered afterwards).
        self.schedule_steps = self.total
        # The fused kernel updates each tensor in one pass; the CPU default is a loop of
        # ~10 elementwise ops per parameter (SmolLM2 DPO step: 2.5 s -> 0.45 s in the
        # profile of docs/benchmarks/dpo.md). FSDP's DTensors keep the default.
        self.opt = torch.optim.AdamW(_param_groups(unwrap(self.model), cfg.weight_decay),
                                     lr=cfg.lr, fused=not self.fsdp or None)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _lr_lambda(cfg, self.total))
        self.step = 0
        self.best: dict[str, Any] | None = None
        self.bad_evals = 0
        self.last_eval: int | None = None
        self.saved: dict[str, Any] | None = None  # the state of the newest checkpoint written
        self.result = TrainResult(steps=0)
        self.fingerprint = {**(fingerprint or {}), "train": asdict(cfg), "world_size": self.world}
        if "data" not in self.fingerprint:  # no data hash from the stage: at least the count
            self.fingerprint["examples"] = len(examples)
        self._rng: dict[str, Any] = {}
        self._last_save = time.monotonic()
        self.tracker = Tracker()  # report_to: opened by fit() on rank 0
        # Checked here, before any training (and before a stage spends more time).
        self._resume_from = self._verify_resume() if cfg.resume else None

    def plain_model(self) -> nn.Module:
        """The trained model outside DDP/FSDP, on the device; under fsdp its full weights are
        gathered into a copy (collective: every rank calls it, every rank gets it)."""
        if self._skeleton is None:
            return unwrap(self.model)
        return fsdp.gather(self.model, self._skeleton, self.device)

    def _reduce(self, values: list[float]) -> list[float]:
        return _all_reduce(values, self.world, self.device)

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
        on_cpu = self.device.type == "cpu"  # the default path: batches are already there
        for i in range(0, len(items), bs):
            batch = self.task.collate(items[i:i + bs])
            yield batch if on_cpu else to_device(batch, self.device)

    # ----- one optimizer step -----------------------------------------------------------
    def _train_step(self) -> dict[str, Any]:
        """Accumulate the step's gradients (an interrupt here loses only this step's work),
        then commit it with signals held."""
        t0 = time.perf_counter()
        self.model.train()
        batches = list(self._micro_batches(self.step))
        prepare = getattr(self.task, "prepare_step", None)
        if prepare is not None:
            with torch.no_grad(), autocast_context(self.dtype, self.device):
                prepare(unwrap(self.model), batches, self._reduce)
        # Global example count first, so every micro-loss is scaled by the same 1/N.
        counts = [float(self._count(b)) for b in batches]
        total = self._reduce([sum(counts)])[0]
        sums: dict[str, float] = {}
        loss_sum = 0.0
        self.opt.zero_grad(set_to_none=True)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            with self._sync(last), autocast_context(self.dtype, self.device):
                loss, _n, metrics = self.task.loss(self.model, batch)
            scaled = loss.float() * (self.world / total)
            with self._sync(last):
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            loss_sum += float(loss.detach())
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        with interrupts.deferred():
            return self._commit(loss_sum, sums, total, t0)

    def _sync(self, last: bool) -> Any:
        """Gradients are reduced across processes only on the step's last micro-batch."""
        if last or self.world == 1:
            return nullcontext()
        return fsdp.no_sync(self.model) if self.fsdp else self.model.no_sync()  # type: ignore[operator]

    def _commit(self, loss_sum: float, sums: dict[str, float], total: float,
                t0: float) -> dict[str, Any]:
        # The collective first: should a peer die here, nothing of the step has happened yet.
        keys = sorted(sums)
        reduced = self._reduce([loss_sum] + [sums[k] for k in keys])
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)  # clip the true gradients, not the scaled ones
        grad_norm = self._clip()
        if self.scaler is not None:
            self.scaler.step(self.opt)  # skips the step when fp16 gradients overflowed
            self.scaler.update()
        else:
            self.opt.step()
        self.sched.step()
        rec: dict[str, Any] = {"loss": reduced[0] / total, "grad_norm": grad_norm,
                               "lr": self.sched.get_last_lr()[0], "examples": total}
        for k, v in zip(keys, reduced[1:], strict=True):
            rec[k] = v if k == "tokens" else v / total
        self.step += 1
        dt = time.perf_counter() - t0
        rec.update(step=self.step, epoch=(self.step - 1) // self.steps_per_epoch,
                   seconds=dt, examples_per_s=rec["examples"] / dt)
        if "tokens" in rec:
            rec["tokens_per_s"] = rec["tokens"] / dt
        self.result.history.append(rec)
        self._log(rec)
        self._rng = ckpt.rng_state()
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
        return fsdp.norm_value(torch.nn.utils.clip_grad_norm_(params, max_norm))

    # ----- evaluation / early stopping --------------------------------------------------
    def _eval_due(self) -> bool:
        cfg = self.cfg
        return bool(cfg.eval_every and (self.step % cfg.eval_every == 0
                                        or self.step % self.steps_per_epoch == 0))

    def _maybe_eval(self, force: bool = False) -> bool:
        """Run evaluate() when due; returns True when early stopping says stop."""
        cfg = self.cfg
        if self.evaluate is None or not (force or self._eval_due()):
            return False
        unwrap(self.model).eval()
        with torch.no_grad(), autocast_context(self.dtype, self.device):
            metrics = dict(self.evaluate(unwrap(self.model)))
        metrics["step"] = self.step
        with interrupts.deferred():  # the evaluation's record, best and state: all or none
            self.result.evals.append(metrics)
            self._log({"eval": metrics, "step": self.step})
            self.last_eval = self.step
            value = metrics.get(cfg.early_stopping_metric)
            if value is not None and (self.best is None
                                      or value > self.best[cfg.early_stopping_metric]):
                self.best = metrics
                self.bad_evals = 0
                if self.fsdp:  # every rank writes its shard
                    fsdp.save_sharded(self.out / "checkpoints" / "best" / "sharded",
                                      self.model, None)
                elif self.rank == 0:
                    ckpt.save_weights(unwrap(self.model), self.out / "checkpoints" / "best")
            elif value is not None:
                self.bad_evals += 1
            self._rng = ckpt.rng_state()
        return self._early_stop()

    def _early_stop(self) -> bool:
        patience = self.cfg.early_stopping_patience
        return bool(patience and self.bad_evals >= patience)

    # ----- logging ----------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with open(self.out / "train_log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
        self.tracker.log_metrics({k: v for k, v in record.items() if k != "step"},
                                 record["step"])

    def _state(self) -> dict[str, Any]:
        return {"step": self.step, "best": self.best, "bad_evals": self.bad_evals,
                "last_eval": self.last_eval, "schedule_steps": self.schedule_steps,
                "fingerprint": self.fingerprint}

    # ----- main loop --------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train to ``total`` steps (or early stop), save, restore the best weights when
        early stopping. On SIGINT/SIGTERM save the last completed step and re-raise."""
        self._start()
        if self.rank == 0 and self.cfg.report_to != "none":
            self.tracker = open_tracker(self.cfg.report_to, self.out, self.out.name,
                                        fresh=self._resume_from is None)
            self.tracker.log_config(self.fingerprint)
        try:
            self._loop()
        except interrupts.INTERRUPTS:
            self._on_interrupt()
            raise
        finally:
            self.tracker.log_artifact("checkpoints", self.out / "checkpoints")
            self.tracker.close()
        self._restore_best()
        self.result.steps, self.result.best = self.step, self.best
        return self.result

    def _loop(self) -> None:
        with self.progress.bar(self.total, "training", start=self.step) as bar:
            stopped = self._resumed_eval()
            while self.step < self.total and not stopped:
                rec = self._train_step()
                bar.update(rec)
                stopped = self._maybe_eval()
                if self._save_due():
                    self._save()
        if self.evaluate is not None and self.last_eval is None:
            self._maybe_eval(force=True)
        if self.saved != self._state():
            self._save()

    def _resumed_eval(self) -> bool:
        """An evaluation due at the checkpoint's step that the interrupt cut short runs now
        (as it did in the uninterrupted run); then whether early stopping already stopped."""
        if self.step and self.last_eval != self.step and self._eval_due():
            return self._maybe_eval()
        return self._early_stop()

    def _save_due(self) -> bool:
        cfg = self.cfg
        by_steps = bool(cfg.save_every and self.step % cfg.save_every == 0)
        minutes = cfg.save_every_minutes
        by_time = minutes is not None and time.monotonic() - self._last_save >= 60 * minutes
        if self.world > 1 and minutes is not None:
            # Clocks differ between processes; all must agree, as all wait at _save's barrier.
            by_time = self._reduce([float(by_time)])[0] > 0
        return by_steps or by_time

    def _save(self) -> None:
        if self.rank == 0 or self.fsdp:  # sharded checkpoints: every rank writes its shard
            self._write_checkpoint()
        self.saved = self._state()
        self._last_save = time.monotonic()
        barrier()

    def _write_checkpoint(self) -> Path:
        path = ckpt.save_checkpoint(self.out, unwrap(self.model), self.opt, self.sched,
                                    self._state(), rng=self._rng, keep_last=self.cfg.keep_last,
                                    sharded=self.fsdp, rank=self.rank, scaler=self.scaler)
        finished = self.step >= self.total
        where = "after training finished at" if finished else "at"
        interrupts.keep(interrupts.Kept(
            f"{where} step {self.step} of {self.total}; checkpoint saved in {path}",
            run_folder=self.run_folder))
        return path

    def _on_interrupt(self) -> None:
        """Rank 0 saves the last completed step (no collective: the other processes may be
        anywhere, or gone); every rank then lets the exception go on. A sharded (fsdp)
        checkpoint needs every rank, so under fsdp the last periodic checkpoint is what is
        kept (save_every / save_every_minutes say how often)."""
        if self.fsdp:
            found = ckpt.latest(self.out)
            where = (f"checkpoint of step {found[1]['step']} in {found[0]}" if found
                     else "no checkpoint yet")
            interrupts.keep(interrupts.Kept(
                f"at step {self.step} of {self.total} (fsdp: {where}; an interrupted sharded "
                "run keeps its last periodic checkpoint)", run_folder=self.run_folder))
        elif self.rank != 0:
            interrupts.keep(interrupts.Kept(
                f"at step {self.step} of {self.total} (rank {self.rank}; rank 0 saves the "
                f"checkpoint in {self.out / 'checkpoints'})", run_folder=self.run_folder))
        elif self.step > 0 and self.saved != self._state():
            self._write_checkpoint()

    def _start(self) -> None:
        """Load the verified checkpoint, or clear what an earlier run left in the folder."""
        log = self.out / "train_log.jsonl"
        if self._resume_from is not None:
            folder, state = self._resume_from
            ckpt.load_checkpoint(folder, unwrap(self.model), self.opt, self.sched, self.scaler)
            self.step, self.best = state["step"], state.get("best")
            self.bad_evals, self.last_eval = state.get("bad_evals", 0), state.get("last_eval")
            self.saved = self._state()
            if self.rank == 0:
                ckpt.truncate_log(log, self.step)
        elif self.rank == 0:
            # A fresh run owns the folder: an old log or old checkpoints would mix with its own.
            log.unlink(missing_ok=True)
            shutil.rmtree(self.out / "checkpoints", ignore_errors=True)
        self._rng = ckpt.rng_state()
        self._last_save = time.monotonic()
        if self._resume_from is not None:
            what = f"at step {self.step} of {self.total}; checkpoint in {self._resume_from[0]}"
        else:
            what = "before the first step; nothing to keep"
        interrupts.keep(interrupts.Kept(what, run_folder=self.run_folder))

    def _verify_resume(self) -> tuple[Path, dict[str, Any]] | None:
        """The latest checkpoint, after checking that this run is the one that wrote it and
        that its length allows resuming (:func:`prefline.train.checkpoint.verify_resume`)."""
        return ckpt.verify_resume(self.out, self.fingerprint, self.rank, self.cfg, self.total,
                                  self.schedule_steps, _lr_lambda)

    def _restore_best(self) -> None:
        best_dir = self.out / "checkpoints" / "best"
        if self.best is not None and self.cfg.early_stopping_patience and best_dir.exists():
            barrier()
            if self.fsdp:
                fsdp.load_sharded(best_dir / "sharded", self.model, None)
            else:
                ckpt.load_weights(unwrap(self.model), best_dir)
