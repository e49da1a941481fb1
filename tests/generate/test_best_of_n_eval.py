"""``eval policy --baseline best-of-N:MODEL``: the baseline's responses are the reward model's
picks among N samples of MODEL, so its proxy reward beats plain MODEL's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter
from prefline.evaluate.policy import run as eval_policy
from prefline.evaluate.policy_config import PolicyEvalConfig
from prefline.store.context import Context, Store
from prefline.train.reward import run as train_reward
from prefline.train.reward_config import RewardConfig
from prefline.train.train_config import TrainConfig


def _reward_model(tmp_path: Path, encoder: Path, ctx: Context) -> Path:
    rows = [{"prompt": f"question {i}?", "chosen": "a good answer " * (1 + i % 3),
             "rejected": "bad"} for i in range(16)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RewardConfig(data=str(data), model=str(encoder), max_length=48, test_fraction=0.0,
                       train=TrainConfig(max_steps=2, lr=1e-3, precision="fp32"))
    return Path(train_reward(cfg, ctx.with_run_dir(tmp_path / "rm")).path)


def test_best_of_n_baseline_picks_by_the_reward_model(tmp_path: Path, tiny_causal_dir: Path,
                                                     tiny_encoder_dir: Path,
                                                     sqlite_url: str) -> None:
    ctx = Context(store=Store.open(sqlite_url), progress=Reporter(enabled=False))
    rm = _reward_model(tmp_path, tiny_encoder_dir, ctx)
    prompts = tmp_path / "p.txt"
    prompts.write_text("Say hi.\nWhat is 3 times 4?\nName a colour.\n")
    base = dict(policy=str(tiny_causal_dir), prompts=str(prompts), reward=str(rm),
                max_new_tokens=6, n_boot=100, temperature=1.0)
    plain = eval_policy(PolicyEvalConfig(baseline=str(tiny_causal_dir), **base), ctx)
    best = eval_policy(PolicyEvalConfig(baseline=f"best-of-4:{tiny_causal_dir}", **base), ctx)
    assert plain.proxy is not None and best.proxy is not None
    # The same seeds: A's samples are equal; B's are the picks, so B's mean reward can only
    # rise against the plain baseline's and A's proxy win rate falls.
    assert best.proxy.mean_reward_policy == pytest.approx(plain.proxy.mean_reward_policy)
    assert best.proxy.mean_reward_baseline > plain.proxy.mean_reward_baseline
    assert best.proxy.win_rate < plain.proxy.win_rate


def test_best_of_n_baseline_needs_a_reward_model() -> None:
    with pytest.raises(PreflineError, match="needs --reward"):
        PolicyEvalConfig(policy="default", baseline="best-of-4:default")
    with pytest.raises(PreflineError, match="best-of-N:MODEL"):
        PolicyEvalConfig(policy="default", baseline="best-of-four:default", reward="rm")
