"""``prefline demo``: the whole loop on the embedded defaults, offline, in one command."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from prefline.cli.common import print_json
from prefline.cli.options import stage_command
from prefline.demo.config import DemoConfig, quick_config
from prefline.store.context import Context

DEFAULT_OUT = "prefline-demo"


def _body(cfg: DemoConfig, ctx: Context, *, as_json: bool, reproduce: Path | None) -> None:
    import dataclasses

    from rich.console import Console

    from prefline.demo.pipeline import run
    from prefline.demo.report import write_report
    from prefline.demo.reproduce import differences, recorded_config, render

    recorded = None
    if reproduce is not None:  # the recorded configuration, not this command's settings
        recorded, cfg = recorded_config(reproduce)
        ctx = dataclasses.replace(ctx, seed=cfg.seed)
        if ctx.run_dir is None or ctx.run_dir.resolve() == reproduce.resolve().parent:
            raise typer.BadParameter("reproduce into a fresh folder: --out DIR (the recorded "
                                     "run's own folder would reuse its stages)", param_hint="--out")
    if ctx.run_dir is None:
        ctx = ctx.with_run_dir(DEFAULT_OUT)
    console = Console(stderr=True)
    result = run(cfg, ctx, StageLines(console))
    summary = write_report(cfg, result)
    diffs = differences(recorded, summary) if recorded is not None else None
    if as_json:
        print_json(summary if diffs is None else {
            **summary, "differences": [dataclasses.asdict(d) for d in diffs]})
        return
    _print(summary, result.out, console)
    for line in render(diffs) if diffs is not None else ():
        typer.echo(line)


def register(app: typer.Typer) -> None:
    stage_command(
        "demo", DemoConfig, _body, app=app, command="demo", db_option=False,
        preset=lambda cfg: quick_config() if cfg.quick else None,
        extra=[inspect.Parameter("reproduce", inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Annotated[Path | None, typer.Option(
                                     "--reproduce", help="A demo's summary.json: rerun its "
                                     "recorded configuration (other settings are ignored) into "
                                     "--out and print what differs, figures and settings.")])],
        out_help=f"Folder for everything the demo writes, its own store too (default: "
                 f"./{DEFAULT_OUT}). Re-running with the same folder reuses finished stages.",
        help="The RLHF loop on the embedded defaults, offline: generate → the rules judge "
             "labels a budget of pairs with label noise (the annotator) → store → snapshot → "
             "audit → reward model → best-of-N pairs from the reward model → DPO → evaluate "
             "(headline: the held-out rubric judge) → over-optimisation curve → report. --quick: tiny random models and a few "
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
    judge, ann = summary["judge"], summary["annotator"]
    lines = [f"annotator {ann['judge']!r} labelled {ann['pairs']} of {ann['pairs_available']} "
             f"pairs ({ann['decisive']} decisive, {ann['flipped']} flipped as noise); the "
             f"reward model learned from them; DPO trained on its "
             f"{summary['policy_data']['pairs']} best-vs-worst pairs",
             f"policy vs reference on {summary['eval_prompts']} held-out prompts "
             f"({summary['eval_split']} split), under each judge:"]
    for row in summary["matrix"]:
        ci = row["ci"]
        role = "labelling (gold)" if row["role"] == "labelling" else row["role"]
        lines.append(f"  {row['judge'][:28]:<28} {role:<16} {row['win_rate']:.1%}  "
                     f"(95% CI {ci[0]:.1%}–{ci[1]:.1%})"
                     + ("  <- headline" if row["judge"] == judge and row["role"] == "held-out"
                        else ""))
    lines.append("over-optimisation (win rate over a reference sample; KL nats, best-of-N: "
                 "bound log N − (N−1)/N):")
    for p in summary["overoptimisation"]["points"]:
        if p["kl"] is not None:
            lines.append(f"  {p['policy']:<10} KL {p['kl']:6.3f}  " + "  ".join(
                f"{'gold' if r['role'] == 'labelling' else r['role']} {r['win_rate']:.1%}"
                for r in p["matrix"]))
    lines += [
        f"KL(policy‖ref)   {summary['kl']:.3f} nats/response",
        "RM accuracy      " + (f"{summary['reward_model_accuracy']:.1%} (held-out pairs)"
                                if summary["reward_model_accuracy"] is not None else "n/a"),
    ]
    for line in lines:
        console.print(line)
    if summary["target_met"]:
        console.print(f"[green]Target met: held-out judge {judge!r} win rate ≥ 60% with the CI's "
                      "lower bound above 50% (not the labelling judge, not the proxy).")
    else:
        console.print(f"[bold red]Target NOT met: the policy did not show a held-out judge "
                      f"({judge!r}) win rate ≥ 60% with the CI's lower bound above 50% on "
                      "held-out prompts.")
    console.print(f"report: {out / 'report' / 'index.html'}   summary: {out / 'summary.json'}")
