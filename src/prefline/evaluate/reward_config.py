"""Settings of the ``eval reward`` stage (torch-free, so the CLI derives its options without
loading models; the stage is :func:`prefline.evaluate.reward.run`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefline.base.errors import PreflineError
from prefline.base.privacy import DEFAULT_MIN_GROUP_SIZE, check_k
from prefline.base.tracking import check_report_to


@dataclass(frozen=True)
class RewardEvalConfig:
    """What ``prefline eval reward`` accepts."""

    model: str
    """Saved reward model or ensemble folder (what `prefline train reward` wrote)."""
    snapshot: str | None = None
    """Snapshot id, name or content-hash prefix to evaluate on (instead of data)."""
    data: str | None = None
    """A pairs/rankings/ratings file (any format `prefline import` reads), or RewardBench rows
    with rewardbench (instead of snapshot)."""
    split: Literal["auto", "test", "val", "all"] = "auto"
    """test: the model's held-out prompts (a snapshot's test split; for a file, the prompts its
    training held out, from the fractions and seed in the model card); val: the validation
    prompts training carved from train; all: everything; auto: test for a snapshot, all for
    a file."""
    rewardbench: bool = False
    """data holds RewardBench rows (prompt/chosen/rejected/subset): also report accuracy per
    subset, overall weighted and macro."""
    probes: int = 100
    """Pairs used by the robustness probes (filler, confident tone, typos); 0 skips them."""
    report: str | None = None
    """Also write an HTML report (tables and plots) to this file."""
    segment_key: str | None = None
    """Report accuracy per value of this segment attribute (or user); none: a personalised
    model's own key, no per-segment table for other models."""
    compare: str | None = None
    """A global reward model folder to set beside the evaluated one in the per-segment
    table (e.g. one trained on the same data without --personal)."""
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE
    """k-anonymity: the per-segment table shows only groups with at least this many pairs
    (and says how many it suppressed)."""
    report_to: Literal["none", "tensorboard", "mlflow"] = "none"
    """Also send the metrics, settings and output paths to TensorBoard (<run>/tensorboard) or
    MLflow (MLFLOW_TRACKING_URI; mlflow's default store when unset)."""

    def __post_init__(self) -> None:
        check_report_to(self.report_to)
        if (self.data is None) == (self.snapshot is None):
            raise PreflineError("give exactly one of snapshot or data", field="snapshot")
        if self.rewardbench and (self.data is None or self.split not in ("auto", "all")):
            raise PreflineError("rewardbench reads a data file as a whole (split all)",
                                field="rewardbench")
        check_k(self.min_group_size)
        if self.segment_key is not None and not self.segment_key.strip():
            raise PreflineError("segment_key must name a segment attribute or user",
                                field="segment_key")
        if self.probes < 0:
            raise PreflineError(f"probes must be 0 or more, got {self.probes}", field="probes")
