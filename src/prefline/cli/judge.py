"""``prefline judge``: label pairs of generated responses, derived from :class:`JudgeConfig`."""

from __future__ import annotations

import typer

from prefline.cli.options import run_stage, stage_command, unrecorded
from prefline.judges.run import JudgeConfig, JudgeResult, run
from prefline.store.context import Context


def _summary(result: JudgeResult, _: None) -> list[str]:
    c = result.choices
    return [f"{result.pairs_judged} pairs judged by {result.judge} ({c['a']} a, {c['b']} b, "
            f"{c['tie']} ties, {result.invalid} unusable); {result.rows_written} rows -> "
            f"{result.out}"]


def _body(cfg: JudgeConfig, ctx: Context, *, as_json: bool) -> None:
    run_stage(run, cfg, ctx, as_json=as_json, record=unrecorded, summary=_summary)


def register(app: typer.Typer) -> None:
    """``judge`` is a top-level command, so it is derived onto the main app here."""
    stage_command("judge", JudgeConfig, _body, app=app, command="judge",
                  help="Judge pairs of candidates with any judge; write pairwise JSONL and store "
                       "ai_judge feedback.",
                  flags={"in_file": ("--in",)})
