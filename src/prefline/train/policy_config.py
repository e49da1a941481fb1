"""``DPOConfig``: the settings of policy training from preferences (DPO family and KTO).

Free of torch, so the command line derives ``prefline train dpo``'s options (and ``--help``)
from it without loading torch. Every field's docstring is its ``--help`` text.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Literal

from prefline.base.errors import PreflineError
from prefline.train.lengths import check_max_length
from prefline.train.train_config import TrainConfig

PolicyLoss = Literal["sigmoid", "ipo", "cdpo", "robust", "hinge", "simpo", "orpo", "kto"]
"""The names of :data:`prefline.losses.policy.LOSSES` (a test keeps the two equal)."""


@dataclass(frozen=True)
class DPOConfig:
    """What to train on, what to optimise, and (``train``) how the engine optimises."""

    snapshot: str | None = None
    """Store snapshot to train on (id, name or content-hash prefix): its train split trains
    (minus a val split), its test split is the held-out set. Give this or data."""
    data: str | None = None
    """File to train on instead of a snapshot (any format `prefline import` reads); a
    held-out split of test_fraction of its prompts is cut by the rule snapshots use."""
    model: str | None = None
    """Policy to start from, and the reference model: hub id or local folder; none = the
    embedded SmolLM2-135M-Instruct."""
    loss: PolicyLoss = "sigmoid"
    """sigmoid (DPO) | ipo | cdpo | robust (rDPO) | hinge | simpo | orpo train on pairs (and
    rankings, as their implied pairs); kto trains on thumbs and on pairs split into a
    desirable and an undesirable response."""
    beta: float = 0.1
    """Strength of the pull towards the reference (KL weight); for simpo the reward scale."""
    label_smoothing: float = 0.1
    """Assumed label-flip rate ε for cdpo and robust."""
    gamma: float = 0.5
    """SimPO target reward margin."""
    rpo_alpha: float = 0.0
    """Weight of RPO's length-normalised NLL on the chosen response, added to a paired loss
    (0 = off)."""
    desirable_weight: float = 1.0
    """KTO weight of desirable examples (raise it when they are the minority)."""
    undesirable_weight: float = 1.0
    """KTO weight of undesirable examples."""
    max_length: int = 512
    """Tokens of prompt + the longer response (at least 16); prompts are cut from the left
    first. A budget that cuts both prompt and response of every example is refused."""
    row_tokens: int = 0
    """Packed row length in tokens (0 = the largest prompt group in each micro-batch)."""
    lora: bool = False
    """Train LoRA adapters instead of every weight (the base with adapters off is the
    reference)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input."""
    pairs: Literal["all", "best_vs_worst"] = "all"
    """all: every decisive pair trains; best_vs_worst: one pair per prompt, the one whose
    chosen response won the most of the prompt's comparisons and whose rejected one won the
    fewest (the clearest signal per step when K candidates were judged pairwise). DPO only."""
    val_fraction: float = 0.1
    """Share of the training prompts carved out as the val split (grouped by prompt, as in
    reward training): held-out training metrics, early stopping and the best checkpoint."""
    test_fraction: float = 0.1
    """With data FILE only: share of its prompts held out as the test split."""
    export: Literal["auto", "merged", "adapter"] = "auto"
    """How the policy is saved: auto (full: weights, LoRA: adapter) | merged (LoRA merged
    into plain transformers weights) | adapter (peft adapter; needs lora)."""
    logits_chunk: int = 512
    """Response tokens per LM-head chunk: bounds logits memory at chunk × vocabulary."""
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    """Engine settings: learning rate, batch, precision, checkpoints, early stopping."""

    def __post_init__(self) -> None:
        if self.snapshot is not None and self.data is not None:
            raise PreflineError("give either snapshot or data, not both", field="data")
        if self.loss not in typing.get_args(PolicyLoss):
            raise PreflineError(f"unknown loss {self.loss!r}; expected one of "
                                f"{', '.join(typing.get_args(PolicyLoss))}", field="loss")
        for name in ("beta", "desirable_weight", "undesirable_weight"):
            if getattr(self, name) <= 0:
                raise PreflineError(f"{name} must be positive", field=name)
        if not 0 <= self.label_smoothing < 0.5:
            raise PreflineError("label_smoothing must be in [0, 0.5)", field="label_smoothing")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 0.5:
                raise PreflineError(f"{name} must be in [0, 0.5)", field=name)
        check_max_length(self.max_length)
        for name in ("lora_r", "lora_alpha", "logits_chunk"):
            if getattr(self, name) < 1:
                raise PreflineError(f"{name} must be at least 1", field=name)
        if self.row_tokens < 0:
            raise PreflineError("row_tokens must be 0 or more", field="row_tokens")
        if not 0 <= self.lora_dropout < 1:
            raise PreflineError("lora_dropout must be in [0, 1)", field="lora_dropout")
        if self.export == "adapter" and not self.lora:
            raise PreflineError("export=adapter needs --lora", field="export")
        if self.rpo_alpha < 0:
            raise PreflineError("rpo_alpha must be 0 or more", field="rpo_alpha")
        if self.pairs != "all" and self.loss == "kto":
            raise PreflineError("pairs=best_vs_worst selects pairs; kto trains on single "
                                "responses", field="pairs")
        if self.rpo_alpha and self.loss == "kto":
            raise PreflineError("rpo_alpha applies to paired losses, not kto", field="rpo_alpha")

    @property
    def kto(self) -> bool:
        """KTO trains on single labelled responses; every other loss on pairs."""
        return self.loss == "kto"
