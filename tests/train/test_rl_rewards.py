"""Reward sources of online RL: an ensemble's mean - λ·std, a judge's round-robin win share
within each prompt's group, Python functions (and their errors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prefline.base.errors import PreflineError
from prefline.models.reward import RewardEnsemble, RewardModel, load_reward_model
from prefline.train.rl_config import RewardSource
from prefline.train.rl_rewards import exact_answer, make_scorer, think_answer_format


@pytest.fixture(scope="module")
def ensemble_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    members = [RewardModel.create(str(tiny_encoder_dir), max_length=64, seed=s) for s in (0, 1)]
    return RewardEnsemble(members, 1.0).save(tmp_path_factory.mktemp("ens") / "ens")


def test_ensemble_mean_minus_lambda_std(ensemble_dir: Path) -> None:
    prompts, outs = ["hi", "hi"], ["hello there", "go away"]
    s = load_reward_model(ensemble_dir).member_scores(list(zip(prompts, outs, strict=True)))
    assert isinstance(s, np.ndarray) and s.shape == (2, 2)
    plain = make_scorer(RewardSource(reward_model=str(ensemble_dir)))(prompts, outs, {})
    penal = make_scorer(RewardSource(reward_model=str(ensemble_dir),
                                     uncertainty_penalty=0.5))(prompts, outs, {})
    np.testing.assert_allclose(plain, s.mean(0), rtol=1e-6)
    np.testing.assert_allclose(penal, s.mean(0) - 0.5 * s.std(0), rtol=1e-6)


def test_penalty_needs_an_ensemble(ensemble_dir: Path) -> None:
    with pytest.raises(PreflineError, match="ensemble"):
        make_scorer(RewardSource(reward_model=str(ensemble_dir / "member-0"),
                                 uncertainty_penalty=0.5))


def test_judge_rewards_are_win_shares_within_each_prompt() -> None:
    """Two groups of 3: each completion plays the other 2 of its own prompt; a group's shares
    sum to C(3,2)/2 = 1.5 whatever the verdicts (every game hands out one point)."""
    score = make_scorer(RewardSource(judge="rules"))
    prompts = ["How do I boil an egg?"] * 3 + ["Name a colour."] * 3
    outs = ["Put it in boiling water for 8 minutes, then cool it.", "no", "",
            "Blue.", "Blue is a colour.", "I cannot help with that."]
    r = score(prompts, outs, {})
    assert all(0 <= x <= 1 for x in r)
    assert sum(r[:3]) == pytest.approx(1.5) and sum(r[3:]) == pytest.approx(1.5)
    assert r[0] > r[1]


def test_function_rewards_and_their_errors() -> None:
    assert exact_answer(["q", "q"], ["so it is 42", "41 or 4"], answer=[42, 42]) == [1.0, 0.0]
    assert think_answer_format([""] * 2, ["<think>x</think> <answer>1</answer>", "1"]) == [1, 0]
    with pytest.raises(PreflineError, match="answer"):
        exact_answer(["q"], ["1"])
    with pytest.raises(PreflineError, match="cannot load"):
        make_scorer(RewardSource(reward_fn="prefline.nope:f"))
    bad = make_scorer(RewardSource(reward_fn="prefline.train.rl_rewards:exact_answer"))
    with pytest.raises(PreflineError, match="answer"):
        bad(["q"], ["1"], {"completion_ids": [[1]]})
