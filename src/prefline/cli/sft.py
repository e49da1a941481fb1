"""``prefline train sft``: derived from :class:`~prefline.train.sft_config.SFTConfig`.

The body runs the stage, records the policy in the registry (inputs: the data or snapshot
and the base model) and prints what it learnt from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from prefline.cli.common import train_app
from prefline.cli.options import artifact, run_stage, stage_command
from prefline.store.context import Context
from prefline.train.sft_config import SFTConfig

if TYPE_CHECKING:
    from prefline.train.sft import SFTResult


def _summary(result: SFTResult, art_id: int) -> Iterator[str]:
    c = result.counts
    yield (f"fine-tuned for {result.steps} steps on {c['train']} demonstrations "
           f"({c['val']} val, {c['heldout']} held out)")
    for name in ("val", "heldout"):
        m = result.metrics.get(name)
        if m:
            yield f"{name} NLL per token {m['nll_before']:.3f} -> {m['nll']:.3f}"
    yield from (f"note: {note}" for note in result.notes)
    yield f"policy: {Path(result.path)}  (artifact {art_id})"


def _body(cfg: SFTConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.train.sft import run

    run_stage(run, cfg, ctx, as_json=as_json, record=artifact("sft"), summary=_summary,
              run_dir="sft")


stage_command(
    "sft", SFTConfig, _body, app=train_app, command="train sft",
    help="Supervised fine-tuning on demonstrations: a best-of-N file (rejection sampling: "
         "prefline generate --best-of N --reward RM) or the preferred responses of a snapshot "
         "or file. Give --snapshot ID or --data FILE.",
    out_help="Run folder: checkpoints, train_log.jsonl, the exported policy (default: "
             "<data dir>/runs/sft-<time>).")


def register(app: typer.Typer) -> None:
    """The command is added to the shared train group at import time."""
