"""A judge backed by a trained prefline reward model (single or ensemble).

The verdict's confidence is the model's calibrated probability P(winner ≻ loser) =
σ((r_w − r_l) / T), with T fitted on validation data when the model was trained, so a 0.8
means the model is right about 80% of the time at that margin. Each response is scored on its
own, so there is no position to be biased by (``both_orders`` is False and needs no swap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.judges.base import PairItem, PromptLike, Verdict, dir_fingerprint

SCORE_CHUNK = 64  # (prompt, response) items per scoring call: bounded memory, still batched


class RewardModelJudge:
    """``reward:DIR``. ``tie_band``: |P(a≻b) − 0.5| at or below this is a tie (0 = only
    identical scores tie)."""

    name = "reward"
    both_orders = False

    def __init__(self, path: str | Path, tie_band: float = 0.0,
                 provenance: dict[str, Any] | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_dir():
            raise PreflineError("reward model folder does not exist", path=str(path))
        if not 0.0 <= tie_band < 0.5:
            raise PreflineError("tie_band must be in [0, 0.5)", field="tie_band")
        self.tie_band = tie_band
        self.provenance = provenance  # how the model was built (rm-hh: its recipe)
        self._fingerprint = dir_fingerprint(self.path)
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            from prefline.models.reward import load_reward_model

            self._model = load_reward_model(self.path)
        return self._model

    def config(self) -> dict[str, Any]:
        cfg = {"judge": "reward", "version": 1, "path": str(self.path),
               "weights_sha256": self._fingerprint, "tie_band": self.tie_band}
        return {**cfg, "provenance": self.provenance} if self.provenance else cfg

    def rate(self, prompt: PromptLike, response: str) -> dict[str, float]:
        """The normalised reward (mean 0, std 1 on the model's reference set)."""
        return {"reward": float(self.model.score(prompt, [response])[0])}

    def judge(self, prompt: PromptLike, a: str, b: str) -> Verdict:
        return self.judge_many([(prompt, a, b)])[0]

    def judge_many(self, items: Sequence[PairItem],
                   on_done: Callable[[int], None] | None = None) -> list[Verdict]:
        """Score every response in batched passes, then compare per pair."""
        out = []
        per_chunk = max(1, SCORE_CHUNK // 2)
        for start in range(0, len(items), per_chunk):
            chunk = items[start:start + per_chunk]
            flat = [(p, r) for p, a, b in chunk for r in (a, b)]
            scores = self.model.score_items(flat)
            for k, (_, a, b) in enumerate(chunk):
                if a == b:  # batched bf16 scoring can differ in the last bits for equal texts
                    out.append(Verdict("tie", 1.0, "identical responses"))
                else:
                    out.append(self._verdict(scores[2 * k], scores[2 * k + 1]))
            if on_done is not None:
                on_done(len(chunk))
        return out

    def _verdict(self, ra: float, rb: float) -> Verdict:
        # Same formula as the model's preference_prob, applied to batch-scored rewards.
        p_a = 1.0 / (1.0 + math.exp(-(ra - rb) / float(self.model.temperature)))
        details = {"reward_a": round(ra, 6), "reward_b": round(rb, 6), "p_a": round(p_a, 6)}
        if abs(p_a - 0.5) <= self.tie_band:
            return Verdict("tie", 1.0 - abs(p_a - 0.5) * 2, f"rewards {ra:.3f} vs {rb:.3f}: "
                           f"P(a better) {p_a:.3f} within the tie band", details)
        choice = "a" if p_a > 0.5 else "b"
        conf = max(p_a, 1.0 - p_a)
        return Verdict(choice, conf, f"reward {max(ra, rb):.3f} vs {min(ra, rb):.3f}: "
                       f"calibrated P({choice} better) = {conf:.3f}", details)
