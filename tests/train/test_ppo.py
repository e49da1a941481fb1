"""PPO on the toy task of test_rl.py: the reward rises from below 0.2 to above 0.8; the
adaptive KL coefficient moves and survives a resume; a separate critic trains its own copy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from prefline.models.tiny import tiny_causal_lm
from prefline.train.ppo import fit_ppo
from prefline.train.rl_config import PPOConfig, RolloutConfig

sys.path.insert(0, str(Path(__file__).parent))
from test_rl import context, toy_prompts, toy_reward, toy_train  # noqa: E402


def _log(run: Path) -> list[dict[str, Any]]:
    """The training steps' records (the monitor's evaluations are logged there too)."""
    rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    return [r for r in rows if "eval" not in r]


def test_ppo_toy_reward_rises_from_below_02_to_above_08(tmp_path: Path) -> None:
    prompts = str(toy_prompts(tmp_path / "p.jsonl"))
    cfg = PPOConfig(reward=toy_reward(), train=toy_train(20),
                    rollout=RolloutConfig(prompts=prompts, k=8, max_new_tokens=4))
    lm, tok = tiny_causal_lm(seed=0)
    res = fit_ppo(cfg, context(tmp_path / "run"), lm, tok, base_model="tiny")
    rewards = [h["reward"] for h in res.history]
    assert rewards[0] < 0.2 and rewards[-1] > 0.8, rewards
    betas = [h["beta"] for h in res.history]
    # The KL (~0 at first, far above target later) moves β down then up (Ziegler et al.).
    assert betas[0] == 0.05 and betas[1] < 0.05 and betas[-1] > min(betas), betas
    assert res.method == "ppo" and res.history[-1]["value_loss"] >= 0


def test_ppo_resume_with_adaptive_kl_and_critic_equals_uninterrupted(tmp_path: Path) -> None:
    """Separate critic, 2 PPO epochs per rollout, a fast KL controller; the first run stops
    after step 3 (mid-rollout); resumed == uninterrupted (losses, β, weights)."""
    prompts = str(toy_prompts(tmp_path / "p.jsonl"))

    def go(run: Path, steps: int, resume: bool) -> Any:
        cfg = PPOConfig(reward=toy_reward(),
                        rollout=RolloutConfig(prompts=prompts, k=2, max_new_tokens=4,
                                              iterations=2),
                        value_model="critic", kl_target=0.01, kl_horizon=10.0,
                        train=toy_train(steps, resume=resume))
        lm, tok = tiny_causal_lm(seed=0)
        return fit_ppo(cfg, context(run), lm, tok, base_model="tiny")

    go(tmp_path / "full", 5, False)
    go(tmp_path / "cut", 3, False)
    go(tmp_path / "cut", 5, True)
    keys = ("loss", "reward", "beta", "value_loss", "grad_norm")
    rows = [torch.tensor([[r[k] for k in keys] for r in _log(tmp_path / run)])
            for run in ("full", "cut")]
    torch.testing.assert_close(rows[1], rows[0], rtol=1e-5, atol=1e-6)
    assert len({r["beta"] for r in _log(tmp_path / "full")}) == 3  # β changed per rollout
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=1e-5, atol=1e-6)
    # the checkpoint holds the critic, a separate copy, and it trained away from the policy
    ckpt = load_file(str(tmp_path / "full" / "checkpoints" / "step-5" / "trainable.safetensors"))
    assert "value_head.proj.weight" in ckpt
    emb = "model.embed_tokens.weight"
    assert not torch.equal(ckpt[f"critic.{emb}"], ckpt[f"lm.{emb}"])
