"""``prefline train online-dpo``: derived from
:class:`~prefline.train.online_dpo_config.OnlineDPOConfig`.

The body runs the rounds and registers every round's policy in order, linking each to the
previous round's artifact (``previous_policy``), so the registry holds the whole chain with
each round's metrics (mean labeller reward, pairs, DPO loss, monitor measurement).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from prefline.base.stage import Ref
from prefline.cli.common import train_app
from prefline.cli.options import run_stage, stage_command
from prefline.store.context import Context, Store
from prefline.train.online_dpo_config import OnlineDPOConfig

if TYPE_CHECKING:
    from prefline.train.online_dpo import OnlineDPOResult


def record_rounds(store: Store, result: OnlineDPOResult, cfg: OnlineDPOConfig) -> list[int]:
    """Register each round (in order) with its ``previous_policy`` input pointing at the
    artifact of the round before; returns the artifact ids."""
    from prefline.registry import record_result

    ids: list[int] = []
    for rnd in result.rounds:
        inputs = tuple(Ref("previous_policy", artifact_id=ids[-1])
                       if ids and i.role == "previous_policy" else i for i in rnd.inputs)
        ids.append(record_result(store, dataclasses.replace(rnd, inputs=inputs), cfg,
                                 name=f"online-dpo-round-{rnd.round}"))
    return ids


def _record(ctx: Context, result: OnlineDPOResult,
            cfg: OnlineDPOConfig) -> tuple[list[int], dict[str, Any]]:
    ids = record_rounds(ctx.store, result, cfg)
    return ids, {"artifact_ids": ids}


def _summary(result: OnlineDPOResult, ids: list[int]) -> Iterator[str]:
    for rnd, art in zip(result.rounds, ids, strict=True):
        m = rnd.metrics
        mon = m.get("monitor") or {}
        yield (f"round {rnd.round}: mean reward {m['reward']:.4f} on its samples, "
               f"{m['pairs']} pairs (+{m['offline_pairs']} offline)"
               + (f"; after: proxy {mon['proxy']:.4f}, KL {mon['kl']:.3f}" if mon else "")
               + f"  (artifact {art})")
    if result.stop_reason:
        yield f"stopped early: {result.stop_reason}"
    if result.plot is not None:
        yield f"over-optimisation plot: {result.plot}"
    yield f"policy: {result.path}"


def _body(cfg: OnlineDPOConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.train.online_dpo import run

    run_stage(run, cfg, ctx, as_json=as_json, record=_record, summary=_summary,
              run_dir="online-dpo")


stage_command(
    "online-dpo", OnlineDPOConfig, _body, app=train_app, command="train online-dpo",
    help="Online / iterative DPO: rounds of sampling k candidates from the current policy, "
         "labelling them with --reward (reward model or python:FUNC) or --judge, and one DPO "
         "stage on best-vs-worst (or all) pairs; the over-optimisation monitor watches KL, "
         "proxy and --gold and stops on --kl-budget or a falling gold score.",
    out_help="Run folder: round-NNN/ (candidates, DPO run, policy), rounds.jsonl, "
             "monitor.jsonl, overoptimisation.png (default: <data dir>/runs/online-dpo-<time>).")


def register(app: typer.Typer) -> None:
    """The command is added to the shared train group at import time."""
