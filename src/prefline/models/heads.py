"""Reward-model heads as plain data (torch-free, so configs that name heads load fast)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefline.base.errors import PreflineError


@dataclass(frozen=True)
class HeadSpec:
    """Named heads, operator weights and guardrail thresholds (raw head-score units)."""

    names: tuple[str, ...] = ("reward",)
    weights: dict[str, float] = field(default_factory=dict)
    """Missing names weigh 1.0."""
    thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names or len(set(self.names)) != len(self.names):
            raise PreflineError("heads must be a non-empty list of distinct names", field="heads")
        for key in (*self.weights, *self.thresholds):
            if key not in self.names:
                raise PreflineError(f"unknown head {key!r}; heads are {list(self.names)}",
                                    field="heads")
