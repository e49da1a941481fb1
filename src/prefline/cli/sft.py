"""``prefline train sft``: derived from :class:`~prefline.train.sft_config.SFTConfig`.

The body runs the stage, records the policy in the registry (inputs: the data or snapshot
and the base model) and prints what it learnt from.
"""

from __future__ import annotations

from pathlib import Path

import typer

from prefline.base.distributed import rank
from prefline.cli.common import default_run_dir, print_json, train_app
from prefline.cli.options import stage_command
from prefline.store.context import Context
from prefline.train.sft_config import SFTConfig


def _body(cfg: SFTConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.registry import record_result
    from prefline.train.sft import run

    if ctx.run_dir is None:
        ctx = ctx.with_run_dir(default_run_dir("sft"))
    result = run(cfg, ctx)
    if rank() != 0:
        return
    art_id = record_result(ctx.store, result, cfg, name="sft")
    if as_json:
        print_json({**result.to_json(), "artifact_id": art_id})
        return
    c = result.counts
    typer.echo(f"fine-tuned for {result.steps} steps on {c['train']} demonstrations "
               f"({c['val']} val, {c['heldout']} held out)")
    for name in ("val", "heldout"):
        m = result.metrics.get(name)
        if m:
            typer.echo(f"{name} NLL per token {m['nll_before']:.3f} -> {m['nll']:.3f}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"policy: {Path(result.path)}  (artifact {art_id})")


stage_command(
    "sft", SFTConfig, _body, app=train_app, command="train sft",
    help="Supervised fine-tuning on demonstrations: a best-of-N file (rejection sampling: "
         "prefline generate --best-of N --reward RM) or the preferred responses of a snapshot "
         "or file. Give --snapshot ID or --data FILE.",
    out_help="Run folder: checkpoints, train_log.jsonl, the exported policy (default: "
             "<data dir>/runs/sft-<time>).")


def register(app: typer.Typer) -> None:
    """The command is added to the shared train group at import time."""
