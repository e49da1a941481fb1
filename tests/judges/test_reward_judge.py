"""The reward-model judge on a saved tiny reward model (engineer B's RewardModel)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from prefline.base.errors import PreflineError
from prefline.judges import make_judge
from prefline.models.reward import RewardModel, load_reward_model

PROMPT = "Tell me about cats."
TEXTS = ["Cats are small domesticated felines.", "zzzz", "Dogs bark a lot at night!"]


@pytest.fixture(scope="module")
def reward_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = RewardModel.create(str(tiny_encoder_dir), seed=0)
    model.temperature = 2.0  # as if calibrated: the judge must use it
    return model.save(tmp_path_factory.mktemp("rm") / "model")


def test_verdicts_follow_calibrated_probabilities(reward_dir: Path) -> None:
    judge = make_judge(f"reward:{reward_dir}")
    model = load_reward_model(reward_dir)
    items = [(PROMPT, a, b) for a in TEXTS for b in TEXTS if a != b]
    verdicts = judge.judge_many(items)  # type: ignore[attr-defined]
    for (p, a, b), v in zip(items, verdicts, strict=True):
        # Batched scoring (bf16 autocast where available) may differ in the last bits from
        # scoring the pair alone, so compare with a tolerance and skip near-coin-flips.
        p_a = model.preference_prob(p, a, b)
        assert math.isclose(v.confidence, max(p_a, 1 - p_a), abs_tol=3e-3)
        if abs(p_a - 0.5) > 0.01:
            assert v.choice == ("a" if p_a > 0.5 else "b")
    assert judge.judge(PROMPT, TEXTS[0], TEXTS[0]).choice == "tie"
    assert set(judge.rate(PROMPT, TEXTS[0])) == {"reward"}
    cfg = judge.config()
    assert cfg["path"] == str(reward_dir.resolve()) and len(cfg["weights_sha256"]) == 64


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PreflineError, match="does not exist"):
        make_judge(f"reward:{tmp_path / 'nope'}")
