"""Online DPO on a toy task with a Python reward: a tiny model learns it; pairs by hand;
KL-budget stop; resume == uninterrupted; every round registered with its lineage."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from policy_fixtures import context
from safetensors.torch import load_file

from prefline.base.errors import PreflineError
from prefline.base.stage import Ref
from prefline.cli.online_dpo import record_rounds
from prefline.generate.best_of_n import Picked
from prefline.registry.lineage import inputs_of
from prefline.train.online_dpo import OnlineDPOConfig, make_pairs, run
from prefline.train.policy_config import DPOConfig
from prefline.train.train_config import TrainConfig

REWARD = '''
def lowercase_share(prompt, response):
    """Share of the response's characters that are ASCII lowercase letters (a random byte
    model scores ~0.1; a policy that writes only letters scores 1)."""
    return sum("a" <= ch <= "z" for ch in response) / len(response) if response else 0.0
'''


def _config(tmp_path: Path, model: Path, **kw: Any) -> OnlineDPOConfig:
    (tmp_path / "reward.py").write_text(REWARD)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"q{i}" for i in range(16)))
    dpo = DPOConfig(beta=0.1, val_fraction=0.0, test_fraction=0.0, max_length=64,
                    train=TrainConfig(lr=1e-2, batch_size=8, max_steps=4, precision="fp32",
                                      warmup_ratio=0.0, schedule="constant"))
    base: dict[str, Any] = dict(
        prompts=str(prompts), model=str(model), reward=f"python:{tmp_path / 'reward.py'}:"
        "lowercase_share", rounds=6, prompts_per_round=16, k=4, max_new_tokens=8,
        monitor_prompts=str(prompts), monitor_limit=8, dpo=dpo)
    return OnlineDPOConfig(**{**base, **kw})


def test_toy_task_mean_reward_rises_above_0_8(tmp_path: Path, tiny_causal_dir: Path) -> None:
    cfg = _config(tmp_path, tiny_causal_dir)
    result = run(cfg, context(tmp_path / "run"))
    rewards = [r.metrics["reward"] for r in result.rounds]
    assert len(rewards) == 6 and rewards[0] < 0.2
    assert result.monitor[0]["proxy"] < 0.2 and result.monitor[-1]["proxy"] > 0.8
    assert result.monitor[-1]["kl"] > result.monitor[1]["kl"] > 0  # the policy moved away
    assert result.plot is not None and result.plot.read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "run" / "rounds.jsonl").read_text().splitlines()) == 6


def test_pairs_by_hand() -> None:
    picks = [Picked(["a", "b", "c"], [0.2, 0.9, 0.2], 1), Picked(["x", "y"], [0.5, 0.5], 0)]
    bvw = make_pairs(["p", "q"], picks, "best_vs_worst")
    assert [(p.chosen, p.rejected) for p in bvw] == [("b", "a")]  # q's scores tie: no pair
    every = make_pairs(["p", "q"], picks, "all", min_gap=0.0)
    assert [(p.chosen, p.rejected) for p in every] == [("b", "a"), ("b", "c")]


def test_kl_budget_stops_the_run(tmp_path: Path, tiny_causal_dir: Path) -> None:
    result = run(_config(tmp_path, tiny_causal_dir, rounds=4, kl_budget=2.0),
                 context(tmp_path / "run"))
    assert len(result.rounds) < 4 and result.stop_reason is not None
    assert "budget 2.0" in result.stop_reason


def _weights(result: Any) -> dict[str, Any]:
    return load_file(str(result.path / "model.safetensors"))


def test_resume_equals_uninterrupted_and_rounds_register(tmp_path: Path, tiny_causal_dir: Path,
                                                         sqlite_url: str) -> None:
    cfg = _config(tmp_path, tiny_causal_dir, rounds=2, monitor_every=0)
    whole = run(cfg, context(tmp_path / "whole"))
    first = run(dataclasses.replace(cfg, rounds=1), context(tmp_path / "split"))
    assert len(first.rounds) == 1
    resumed = run(dataclasses.replace(cfg, resume=True), context(tmp_path / "split"))
    assert [r.round for r in resumed.rounds] == [0, 1]
    a, b = _weights(whole), _weights(resumed)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    with pytest.raises(PreflineError, match="other settings"):
        run(dataclasses.replace(cfg, resume=True, k=3), context(tmp_path / "split"))

    ctx = context(tmp_path / "whole", sqlite_url)
    ids = record_rounds(ctx.store, whole, cfg)
    second = {r.role: r for r in inputs_of(ids[1], ctx.store)}
    assert second["previous_policy"].artifact_id == ids[0]
    assert second["judge"].ref == cfg.reward and second["data"].ref
    assert {r.role for r in inputs_of(ids[0], ctx.store)} == {"base_model", "judge", "data"}


def test_semi_online_mixes_offline_pairs(tmp_path: Path, tiny_causal_dir: Path) -> None:
    offline = tmp_path / "offline.jsonl"
    offline.write_text("".join(json.dumps({"prompt": f"o{i}", "chosen": "abc", "rejected": "X!"})
                               + "\n" for i in range(20)))
    cfg = _config(tmp_path, tiny_causal_dir, rounds=1, monitor_every=0, offline=str(offline),
                  offline_fraction=0.5)
    rnd = run(cfg, context(tmp_path / "run")).rounds[0]
    assert rnd.metrics["offline_pairs"] == round(0.5 * rnd.metrics["pairs"]) > 0
    assert Ref("data", ref=str(offline.resolve())) in rnd.inputs


def test_bad_settings() -> None:
    with pytest.raises(PreflineError, match="exactly one labeller"):
        OnlineDPOConfig(reward="python:m:f", judge="rules")
    with pytest.raises(PreflineError, match="unknown scorer"):
        OnlineDPOConfig(reward="nonsense")
    with pytest.raises(PreflineError, match="k must be at least 2"):
        OnlineDPOConfig(judge="rules", k=1)
