"""``SFTConfig``: supervised fine-tuning on demonstrations (torch-free, so the command line
derives ``prefline train sft`` from it without loading torch)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from prefline.base.errors import PreflineError
from prefline.train.lengths import check_max_length
from prefline.train.train_config import TrainConfig


@dataclass(frozen=True)
class SFTConfig:
    """What to imitate, from which model, and (``train``) how the engine optimises."""

    snapshot: str | None = None
    """Store snapshot to learn from (id, name or content-hash prefix): its train split
    trains (minus a val split), its test split is the held-out set. Give this or data."""
    data: str | None = None
    """File to learn from instead: a best-of-N file of `prefline generate --best-of N`
    (each prompt's best candidate is the demonstration: rejection sampling), or any file
    `prefline import` reads (a pair's chosen response, a thumbs-up completion, a ranking's
    first response)."""
    model: str | None = None
    """Policy to start from: hub id or local folder; none = the embedded
    SmolLM2-135M-Instruct."""
    max_length: int = 512
    """Tokens of prompt + response (at least 16); prompts are cut from the left first."""
    val_fraction: float = 0.1
    """Share of the training prompts carved out as the val split (per-token NLL, early
    stopping on neg_nll)."""
    test_fraction: float = 0.1
    """With data FILE only: share of its prompts held out as the test split."""
    logits_chunk: int = 512
    """Response tokens per LM-head chunk: bounds logits memory at chunk × vocabulary."""
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    """Engine settings: learning rate, batch, precision, checkpoints, early stopping."""

    def __post_init__(self) -> None:
        if self.snapshot is not None and self.data is not None:
            raise PreflineError("give either snapshot or data, not both", field="data")
        check_max_length(self.max_length)
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 0.5:
                raise PreflineError(f"{name} must be in [0, 0.5)", field=name)
        if self.logits_chunk < 1:
            raise PreflineError("logits_chunk must be at least 1", field="logits_chunk")
