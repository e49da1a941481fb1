"""``PersonalDPOConfig``: per-segment LoRA policies trained with DPO, and a global fallback.

Free of torch, so the command line derives ``prefline train personal-dpo``'s options from
it without loading torch. The DPO settings are the ``dpo`` table, the same
:class:`~prefline.train.policy_config.DPOConfig` ``prefline train dpo`` takes (every
adapter, global and per segment, trains with them), with LoRA on by default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from prefline.base.errors import PreflineError
from prefline.base.privacy import DEFAULT_MIN_GROUP_SIZE, check_k
from prefline.train.policy_config import DPOConfig


@dataclass(frozen=True)
class PersonalDPOConfig:
    """Which segment attribute splits the data, how much data a segment needs, and ``dpo``."""

    segment_key: str = "style"
    """The segment attribute to condition on (e.g. style, for examples declaring
    style=concise); examples without it train only the global adapter."""
    min_pairs: int = 50
    """Training pairs (train + val) a segment needs for its own adapter; a smaller segment
    is served by the global adapter (the manifest says why)."""
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE
    """k-anonymity: a segment with fewer pairs than this is not named in the manifest or
    the output, only counted as suppressed."""
    dpo: DPOConfig = dataclasses.field(
        default_factory=lambda: DPOConfig(lora=True, export="adapter"))
    """DPO settings for every adapter (data source, model, loss, LoRA, ``train``)."""

    def __post_init__(self) -> None:
        if not self.segment_key.strip():
            raise PreflineError("segment_key must name a segment attribute, e.g. style",
                                field="segment_key")
        if self.min_pairs < 1:
            raise PreflineError("min_pairs must be at least 1", field="min_pairs")
        check_k(self.min_group_size)
        if self.min_group_size > self.min_pairs:
            raise PreflineError("min_group_size must not exceed min_pairs: a segment with its "
                                "own adapter is named in the manifest", field="min_group_size")
        if not self.dpo.lora:
            raise PreflineError("personal policies are LoRA adapters over one base; set "
                                "dpo.lora=true", field="lora")
        if self.dpo.export == "merged":
            raise PreflineError("personal policies are exported as adapters (export=adapter "
                                "or auto), not merged weights", field="export")
        if self.dpo.kto:
            raise PreflineError("personal policies train on pairs (a DPO-family loss); "
                                "kto is not supported", field="loss")

    @property
    def seed(self) -> int:
        """The run's seed (the command's Context takes it): the DPO engine's."""
        return self.dpo.train.seed
