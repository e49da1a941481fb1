"""``prefline demo``: the whole loop on the embedded defaults, offline, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from prefline.cli.common import print_json
from prefline.cli.options import stage_command
from prefline.demo.config import DemoConfig, quick_config
from prefline.store.context import Context

DEFAULT_OUT = "prefline-demo"


def _body(cfg: DemoConfig, ctx: Context, *, as_json: bool) -> None:
    from rich.console import Console

    from prefline.demo.pipeline import run
    from prefline.demo.report import write_report

    if ctx.run_dir is None:
        ctx = ctx.with_run_dir(DEFAULT_OUT)
    console = Console(stderr=True)
    result = run(cfg, ctx, StageLines(console))
    summary = write_report(cfg, result)
    if as_json:
        print_json(summary)
        return
    _print(summary, result.out, console)


def register(app: typer.Typer) -> None:
    stage_command(
        "demo", DemoConfig, _body, app=app, command="demo", db_option=False,
        preset=lambda cfg: quick_config() if cfg.quick else None,
        out_help=f"Folder for everything the demo writes, its own store too (default: "
                 f"./{DEFAULT_OUT}). Re-running with the same folder reuses finished stages.",
        help="Generate → judge → store → snapshot → audit → reward model → DPO → evaluate → "
             "report, on the embedded defaults, offline. --quick: tiny random models and a few "
             "prompts (every stage in under 2 minutes; its numbers mean nothing).")


class StageLines:
    """One line per stage on stderr: ran or reused, and how long it took."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def start(self, stage: str) -> None:
        self.console.print(f"[bold]{stage:<9}[/bold] ...", end="\r")

    def end(self, result: Any) -> None:
        how = "[dim]reused[/dim]" if result.reused else "[green]done[/green]  "
        self.console.print(f"{result.name:<9} {how}  {result.seconds:7.1f}s")


def _print(summary: dict[str, Any], out: Path, console: Any) -> None:
    ci = summary["judge_win_rate_ci"]
    proxy = summary["proxy_win_rate"]
    lines = [
        f"judge win rate   {summary['judge_win_rate']:.1%}  (95% CI {ci[0]:.1%}–{ci[1]:.1%}, "
        f"{summary['eval_prompts']} held-out prompts)",
        f"proxy win rate   {proxy:.1%}" if proxy is not None else "proxy win rate   n/a",
        f"KL(policy‖ref)   {summary['kl']:.3f} nats/response",
        "RM accuracy      " + (f"{summary['reward_model_accuracy']:.1%} (held-out pairs)"
                                if summary["reward_model_accuracy"] is not None else "n/a"),
    ]
    for line in lines:
        console.print(line)
    if summary["target_met"]:
        console.print("[green]Target met: judge win rate ≥ 60% with the CI's lower bound above 50%.")
    else:
        console.print("[bold red]Target NOT met: the policy did not show a judge win rate ≥ 60% "
                      "with the CI's lower bound above 50% on held-out prompts.")
    console.print(f"report: {out / 'report' / 'index.html'}   summary: {out / 'summary.json'}")
