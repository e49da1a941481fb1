"""``prefline disagree``: the two-segment disagreement set (concise vs detailed users),
derived from :class:`prefline.personal.disagree.DisagreeConfig`."""

from __future__ import annotations

from collections.abc import Iterator

import typer

from prefline.base.errors import PreflineError
from prefline.cli.options import run_stage, stage_command, unrecorded
from prefline.personal.disagree import DisagreeConfig, DisagreeResult, run
from prefline.store.context import Context


def _body(cfg: DisagreeConfig, ctx: Context, *, as_json: bool) -> None:
    if cfg.out is None:
        raise PreflineError("give --out DIR (where train.jsonl and heldout.jsonl go)",
                            field="out")

    def summary(result: DisagreeResult, _: None) -> Iterator[str]:
        for split, counts in result.counts.items():
            yield f"{split}: " + ", ".join(f"style={k}: {v} pairs" for k, v in counts.items())
        yield f"candidate pairs dropped as ties: {result.dropped_ties}"
        yield f"written: {cfg.out}/train.jsonl, heldout.jsonl, manifest.json"

    run_stage(run, cfg, ctx, as_json=as_json, record=unrecorded, summary=summary)


def register(app: typer.Typer) -> None:
    stage_command("disagree", DisagreeConfig, _body, app=app, command="disagree",
                  help="Build a preference set where two segments disagree: candidates of "
                       "different lengths labelled by two opposite rules judges (style=concise "
                       "prefers short answers, style=detailed long ones), with pseudonymous "
                       "users, split by prompt.")
