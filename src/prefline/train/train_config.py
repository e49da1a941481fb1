"""``TrainConfig``: how the one training loop optimises, shared by every trainer.

Kept free of torch so that the command line can derive its options (and ``--help``) from
the stage configs that nest it without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefline.base.errors import PreflineError
from prefline.base.tracking import check_report_to


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every trainer (nested as ``train`` in stage configs).

    Where the run writes (checkpoints, ``train_log.jsonl``) and whether it shows progress come
    from the stage's Context, not from here: this is only *how* to optimise.
    """

    lr: float = 5e-5
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.0
    """AdamW weight decay (never applied to biases and norm weights)."""
    epochs: int = 1
    """Passes over the training examples (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Optimizer steps; overrides ``epochs`` when set."""
    batch_size: int = 8
    """Examples per micro-batch per process."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step (exactly equal to one larger batch)."""
    warmup_ratio: float = 0.1
    """Share of the optimizer steps spent warming the learning rate up linearly."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate decay after warmup."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this (None = no clipping)."""
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """auto = bf16 autocast where the hardware has native bf16 (fp32 master weights); on a
    GPU without bf16, fp16 with a gradient scaler; else fp32."""
    strategy: Literal["ddp", "fsdp"] = "ddp"
    """How several processes (torchrun) share the work: ddp = a full copy of the model per
    process, gradients averaged; fsdp = FSDP2 (fully_shard): parameters, gradients and
    optimizer state sharded per transformer layer, checkpoints sharded (torch.distributed
    .checkpoint). One process trains the same either way."""
    activation_checkpointing: bool = False
    """Recompute each transformer layer's activations in the backward pass instead of keeping
    them (less memory, ~1/3 more compute)."""
    cpu_offload: bool = False
    """fsdp on CUDA only: keep the sharded parameters, gradients and optimizer state in CPU
    memory between uses (fits larger models, slower)."""
    report_to: Literal["none", "tensorboard", "mlflow"] = "none"
    """Also send metrics, settings and artifact paths to TensorBoard (<run>/tensorboard) or
    MLflow (MLFLOW_TRACKING_URI; mlflow's default store when unset)."""
    seed: int = 0
    """Seeds the data order and any random initialisation."""
    eval_every: int | None = None
    """Evaluate on the validation split every N optimizer steps, and at each epoch's end
    (None = once, after the last step)."""
    save_every: int | None = None
    """Also write a resumable checkpoint every N optimizer steps (one is always written at
    the end, and on an interrupt)."""
    save_every_minutes: float | None = 10.0
    """Write a resumable checkpoint when this many minutes have passed since the last one
    (None = only every save_every steps, at the end and on an interrupt)."""
    keep_last: int = 2
    """Step checkpoints kept in <run>/checkpoints; older ones are deleted (the best one, kept
    for early stopping, is separate and never counts)."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without improvement, then restore the best weights
    (None = never stop early)."""
    early_stopping_metric: str = "accuracy"
    """Validation metric to maximise for early stopping and the best checkpoint."""
    resume: bool = False
    """Continue from the latest checkpoint in the run folder (--out): weights, optimizer,
    schedule, data order and random state, so the result equals an uninterrupted run. The
    data, base model and every setting that changes the result must equal the checkpoint's
    (only max_steps/epochs may change, when the learning rate of the steps already taken
    stays the same, as may save_every, save_every_minutes, keep_last, the data's location
    and how the result is exported); otherwise the run is refused. Without a checkpoint: trains from step 0 if the folder has no
    train_log.jsonl, else refused. See docs/runs.md."""

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise PreflineError(f"lr must be positive, got {self.lr}", field="lr")
        for name in ("epochs", "batch_size", "grad_accum", "keep_last"):
            if getattr(self, name) < 1:
                raise PreflineError(f"{name} must be at least 1", field=name)
        if self.schedule not in ("cosine", "linear", "constant"):
            raise PreflineError("schedule must be cosine, linear or constant", field="schedule")
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise PreflineError("precision must be auto, bf16, fp16 or fp32", field="precision")
        if self.strategy not in ("ddp", "fsdp"):
            raise PreflineError("strategy must be ddp or fsdp", field="strategy")
        if self.cpu_offload and self.strategy != "fsdp":
            raise PreflineError("cpu_offload needs strategy=fsdp", field="cpu_offload")
        check_report_to(self.report_to)
        if not 0 <= self.warmup_ratio < 1:
            raise PreflineError("warmup_ratio must be in [0, 1)", field="warmup_ratio")
        for name in ("max_steps", "eval_every", "save_every", "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PreflineError(f"{name} must be at least 1 (or unset)", field=name)
        if self.save_every_minutes is not None and self.save_every_minutes <= 0:
            raise PreflineError("save_every_minutes must be positive (or unset)",
                                field="save_every_minutes")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise PreflineError("max_grad_norm must be positive (or unset)", field="max_grad_norm")
