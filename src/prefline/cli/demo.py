"""``prefline demo``: the whole loop on the embedded defaults, offline, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from prefline.cli.common import JsonOption, print_json
from prefline.demo.pipeline import Reporter


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)


def demo_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder for everything the demo writes (its own store too).")] = Path("prefline-demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Tiny random models and a few prompts: checks every stage in < 2 min.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Generate → judge → store → snapshot → audit → reward model → DPO → evaluate → report.

    Re-running with the same --out reuses every finished stage.
    """
    from rich.console import Console

    from prefline.demo.config import full_config, quick_config
    from prefline.demo.pipeline import run_demo
    from prefline.demo.report import write_report

    cfg = quick_config(str(out)) if quick else full_config(str(out))
    console = Console(stderr=True)
    stages = run_demo(cfg, RichReporter(console))
    summary = write_report(cfg, stages)
    if json_out:
        print_json(summary)
        return
    _print(summary, cfg.out_dir, console)


class RichReporter(Reporter):
    """One line per stage (ran / reused, seconds) and a bar for long loops inside a stage."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.progress: Any = None
        self.task: Any = None
        self.decile = -1

    def start(self, stage: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(TextColumn(f"[bold]{stage:<9}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                                 console=self.console, transient=True)
        self.task = self.progress.add_task(stage, total=None, info="")
        self.decile = -1
        self.progress.start()

    def tick(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)
        # Logs (no terminal) get a line per ~10% instead of a live bar.
        decile = done * 10 // total if total else 0
        if not self.console.is_terminal and decile != self.decile:
            self.decile = decile
            self.console.print(f"  {done}/{total}")

    def note(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, info=text)

    def end(self, result: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        how = "[dim]reused[/dim]" if result.reused else "[green]done[/green]"
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
