"""``prefline train rloo|grpo|ppo``: derived from the configs in :mod:`prefline.train.rl_config`.

Every setting is an option (``--k``, ``--beta``, ``--reward-fn``, ``--lr``, ...), and can come
from ``--config FILE`` or a trailing ``key=value``. The body runs the stage, records the
policy in the registry (lineage: base model, reward model or judge or reward function,
prompts) and prints how the reward moved. Under torchrun every rank trains; rank 0 records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from prefline.cli.common import train_app
from prefline.cli.options import artifact, run_stage, stage_command
from prefline.store.context import Context
from prefline.train.rl_config import GRPOConfig, PPOConfig, RLOOConfig

if TYPE_CHECKING:
    from prefline.train.rl_task import OnlineRLResult


def _summary(reward: str) -> Callable[[OnlineRLResult, int], Iterator[str]]:
    """The lines for a run whose reward is ``reward`` (the config's reward spec)."""

    def lines(result: OnlineRLResult, art_id: int) -> Iterator[str]:
        m = result.metrics
        yield (f"trained {result.method} for {result.steps} steps; mean reward "
               f"{m['reward_first']:.3f} -> {m['reward_last']:.3f} ({reward})")
        if m.get("kl_last") is not None:
            yield f"KL to the reference {m['kl_last']:.3f} nats per completion"
        if result.stop_reason:
            yield f"stopped early by the over-optimisation monitor: {result.stop_reason}"
        if result.plot is not None:
            yield f"monitor: {Path(result.run_dir) / 'monitor.jsonl'}, plot {result.plot}"
        yield f"policy: {Path(result.path)}  (artifact {art_id})"

    return lines


def _rl_body(cfg: GRPOConfig | RLOOConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.train.rl import run

    run_stage(run, cfg, ctx, as_json=as_json, record=artifact(cfg.method),
              summary=_summary(cfg.reward.spec()), run_dir=cfg.method)


def _ppo_body(cfg: PPOConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.train.ppo import run

    run_stage(run, cfg, ctx, as_json=as_json, record=artifact("ppo"),
              summary=_summary(cfg.reward.spec()), run_dir="ppo")


_OUT = "Run folder: checkpoints, train_log.jsonl, rollouts, monitor.jsonl and " \
       "overoptimisation.png (the over-optimisation monitor), the exported policy (default: " \
       "<data dir>/runs/<method>-<time>)."
_REWARD = (" Reward: --reward-model DIR (an ensemble's mean minus λ·std with "
           "--uncertainty-penalty), --judge SPEC, or --reward-fn module:function.")

stage_command(
    "grpo", GRPOConfig, _rl_body, app=train_app, command="train grpo",
    help="Train a policy online with GRPO: k completions per prompt, group-normalised "
         "advantages, clipped ratios, k3 KL in the loss (--advantage dr_grpo "
         "--normalisation dr_grpo for Dr. GRPO)." + _REWARD, out_help=_OUT)
stage_command(
    "rloo", RLOOConfig, _rl_body, app=train_app, command="train rloo",
    help="Train a policy online with RLOO: k completions per prompt, leave-one-out "
         "baseline, k1 KL subtracted from the reward, one clipped ratio per completion."
         + _REWARD, out_help=_OUT)
stage_command(
    "ppo", PPOConfig, _ppo_body, app=train_app, command="train ppo",
    help="Train a policy online with PPO: value head or separate critic, GAE, clipped "
         "policy and value losses, per-token KL penalty with Ziegler et al.'s adaptive "
         "controller, reward whitening." + _REWARD, out_help=_OUT)


def register(app: typer.Typer) -> None:
    """The commands are added to the shared train group at import time."""
