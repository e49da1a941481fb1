"""Ensembles of reward models (seeds or bootstrap resamples): mean and spread of rewards.

The std across members is an uncertainty signal: policies that push a reward model into
regions its members disagree on are usually exploiting it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from prefline.base.errors import PreflineError
from prefline.formats.examples import Messages
from prefline.models.reward import CARD, PairwiseScoring, RewardModel, read_card

ENSEMBLE_FORMAT = "prefline-reward-ensemble/1"


class Scorer(Protocol):
    """What evaluators need from a reward model or an ensemble."""

    temperature: float
    card: dict[str, Any]

    def score_items(self, items: Sequence[tuple[Messages | str, str]]) -> list[float]: ...

    def score(self, prompt: Messages | str, responses: Sequence[str]) -> list[float]: ...

    def preference_prob(self, prompt: Messages | str, a: str, b: str) -> float: ...


class RewardEnsemble(PairwiseScoring):
    """K members; each member's scores are already normalised, the ensemble averages them."""

    def __init__(self, members: list[RewardModel], temperature: float = 1.0,
                 card: dict[str, Any] | None = None) -> None:
        if not members:
            raise PreflineError("an ensemble needs at least one member")
        self.members, self.temperature, self.card = members, temperature, dict(card or {})

    def member_scores(self, items: Sequence[tuple[Messages | str, str]]) -> np.ndarray:
        """``[K, N]`` normalised scores of every member."""
        return np.array([m.score_items(items) for m in self.members], dtype=np.float64)

    def score_items(self, items: Sequence[tuple[Messages | str, str]]) -> list[float]:
        return self.member_scores(items).mean(0).tolist() if items else []

    def score_with_std(self, prompt: Messages | str,
                       responses: Sequence[str]) -> tuple[list[float], list[float]]:
        """(mean, std across members) per response."""
        s = self.member_scores([(prompt, r) for r in responses])
        return s.mean(0).tolist(), s.std(0).tolist()

    def save(self, path: str | Path, card: dict[str, Any] | None = None) -> Path:
        """Members under ``member-k/`` + an ensemble ``model_card.json``."""
        path = Path(path)
        names = []
        for k, m in enumerate(self.members):
            name = f"member-{k}"
            m.save(path / name)
            names.append(name)
        first = self.members[0].card
        full = {**self.card, **(card or {}), "format": ENSEMBLE_FORMAT, "members": names,
                "temperature": self.temperature, "backbone": first.get("backbone"),
                "spec": first.get("spec")}
        (path / CARD).write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
        self.card = full
        return path


def load_reward_model(path: str | Path) -> RewardModel | RewardEnsemble:
    """A single model or an ensemble, whichever ``path`` holds."""
    path = Path(path)
    card = read_card(path)
    if card.get("format") == ENSEMBLE_FORMAT:
        members = [RewardModel.load(path / m) for m in card["members"]]
        return RewardEnsemble(members, float(card.get("temperature", 1.0)), card)
    return RewardModel.load(path)
