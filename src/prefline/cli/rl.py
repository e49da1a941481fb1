"""``prefline train rloo|grpo|ppo``: derived from the configs in :mod:`prefline.train.rl_config`.

Every setting is an option (``--k``, ``--beta``, ``--reward-fn``, ``--lr``, ...), and can come
from ``--config FILE`` or a trailing ``key=value``. The body runs the stage, records the
policy in the registry (lineage: base model, reward model or judge or reward function,
prompts) and prints how the reward moved. Under torchrun every rank trains; rank 0 records.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from prefline.base.distributed import rank
from prefline.cli.common import default_run_dir, print_json, train_app
from prefline.cli.options import stage_command
from prefline.store.context import Context
from prefline.train.rl_config import GRPOConfig, PPOConfig, RLOOConfig

if TYPE_CHECKING:
    from prefline.train.rl_task import OnlineRLResult


def _report(result: OnlineRLResult, ctx: Context, cfg: Any, as_json: bool) -> None:
    from prefline.registry import record_result

    if rank() != 0:
        return
    art_id = record_result(ctx.store, result, cfg, name=result.method)
    if as_json:
        print_json({**result.to_json(), "artifact_id": art_id})
        return
    m = result.metrics
    typer.echo(f"trained {result.method} for {result.steps} steps; mean reward "
               f"{m['reward_first']:.3f} -> {m['reward_last']:.3f} ({cfg.reward.spec()})")
    if m.get("kl_last") is not None:
        typer.echo(f"KL to the reference {m['kl_last']:.3f} nats per completion")
    if result.stop_reason:
        typer.echo(f"stopped early by the over-optimisation monitor: {result.stop_reason}")
    if result.plot is not None:
        typer.echo(f"monitor: {Path(result.run_dir) / 'monitor.jsonl'}, plot {result.plot}")
    typer.echo(f"policy: {Path(result.path)}  (artifact {art_id})")


def _rl_body(cfg: GRPOConfig | RLOOConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.train.rl import run

    if ctx.run_dir is None:
        ctx = ctx.with_run_dir(default_run_dir(cfg.method))
    _report(run(cfg, ctx), ctx, cfg, as_json)


def _ppo_body(cfg: PPOConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.train.ppo import run

    if ctx.run_dir is None:
        ctx = ctx.with_run_dir(default_run_dir("ppo"))
    _report(run(cfg, ctx), ctx, cfg, as_json)


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
