"""``prefline disagree``: the two-segment disagreement set (concise vs detailed users),
derived from :class:`prefline.personal.disagree.DisagreeConfig`."""

from __future__ import annotations

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import print_json
from prefline.cli.options import stage_command
from prefline.personal.disagree import DisagreeConfig, run
from prefline.store.context import Context


def _body(cfg: DisagreeConfig, ctx: Context, *, as_json: bool) -> None:
    if cfg.out is None:
        raise PreflineError("give --out DIR (where train.jsonl and heldout.jsonl go)",
                            field="out")
    result = run(cfg, ctx)
    if as_json:
        print_json(result.to_json())
        return
    for split, counts in result.counts.items():
        typer.echo(f"{split}: " + ", ".join(f"style={k}: {v} pairs" for k, v in counts.items()))
    typer.echo(f"candidate pairs dropped as ties: {result.dropped_ties}")
    typer.echo(f"written: {cfg.out}/train.jsonl, heldout.jsonl, manifest.json")


def register(app: typer.Typer) -> None:
    stage_command("disagree", DisagreeConfig, _body, app=app, command="disagree",
                  help="Build a preference set where two segments disagree: candidates of "
                       "different lengths labelled by two opposite rules judges (style=concise "
                       "prefers short answers, style=detailed long ones), with pseudonymous "
                       "users, split by prompt.")
