"""``prefline audit``: data-quality checks on the store; ``prefline bench audit``: its speed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from prefline.audit.checks import METRIC_HELP
from prefline.base.errors import PreflineError
from prefline.cli.common import DbOption, JsonOption, bench_app, print_json

FAIL_ON_HELP = ("Comma-separated rules <metric><op><number> with op in > < >= <= == !=, e.g. "
                "'position_bias>0.6,alpha<0.4,duplicates>0,leakage>0'; exit 1 listing the breached "
                "ones. Metrics: " + ", ".join(METRIC_HELP) + ", alpha.<question type>.")


def _summary(result: dict[str, Any]) -> str:
    m, s = result["metrics"], result["scope"]
    lines = [f"audited {s['feedback']} feedback events on {s['prompts']} prompts "
             f"from {s['annotators']} annotators"]
    for key in ("alpha", "raw_agreement", "kappa", "position_bias", "length_bias", "chosen_longer",
                "tie_rate", "both_bad_rate", "cycles", "duplicates", "opening_duplicates", "leakage",
                "opening_leakage", "fast_annotations", "outliers", "judge_agreement"):
        lines.append(f"  {key:<17} {m[key]}")
    return "\n".join(lines)


def _run_with_progress(db: str | None, snapshot: str | None, quiet: bool) -> dict[str, Any]:
    from prefline.audit.run import STAGES, run_audit

    if quiet:
        return run_audit(db, snapshot)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("auditing", total=len(STAGES))
        return run_audit(db, snapshot, progress=lambda stage: bar.update(task, advance=1,
                                                                        description=f"audit: {stage} done"))


def audit_cmd(
    db: DbOption = None,
    snapshot: Annotated[str | None, typer.Option("--snapshot", help="Audit one snapshot (id, name or content-hash prefix) instead of the whole store.")] = None,
    json_out: JsonOption = False,
    report: Annotated[Path | None, typer.Option("--report", "--out", help="Write an HTML report with plots here.")] = None,
    fail_on: Annotated[str | None, typer.Option("--fail-on", help=FAIL_ON_HELP)] = None,
) -> None:
    """Agreement, bias, duplicate, leakage and hygiene checks on the collected feedback."""
    from prefline.audit.checks import evaluate, parse_rules

    rules = parse_rules(fail_on) if fail_on else None  # bad rules fail before any work
    if report is not None and not report.parent.exists():
        raise PreflineError(f"folder {report.parent} does not exist", path=str(report), field="--report")
    result = _run_with_progress(db, snapshot, quiet=json_out)
    checks = evaluate(rules, result["metrics"]) if rules else None
    if checks is not None:
        result["checks"] = checks
    if report is not None:
        from prefline.audit.report import write_report

        write_report(result, report, checks)
    if json_out:
        print_json(result)
    else:
        typer.echo(_summary(result))
        if report is not None:
            typer.echo(f"report written to {report}")
    if checks is not None:
        for item in checks["not_evaluated"]:
            print(f"not evaluated: {item['rule']} ({item['reason']})", file=sys.stderr)
        if checks["breached"]:
            print("audit failed: " + "; ".join(checks["breached"]), file=sys.stderr)
            # sys.exit, not typer.Exit: prefline's main runs click with standalone_mode=False,
            # which would turn typer.Exit into a return value and exit 0.
            sys.exit(1)


@bench_app.command("audit")
def bench_audit_cmd(
    n: Annotated[int, typer.Option("--n", min=10, help="Number of synthetic feedback events.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data.")] = 0,
    repeat: Annotated[int, typer.Option(min=1, help="Audit runs; the median is reported.")] = 3,
    json_out: JsonOption = False,
) -> None:
    """Fill a fresh SQLite store with N synthetic events and time the audit (budget: 30 s)."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from prefline.audit.bench import bench_audit

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("bench audit", total=None)
        result = bench_audit(n, seed, repeat, progress=lambda msg: bar.update(task, description=msg))
    if json_out:
        print_json(result)
        return
    typer.echo(f"{n} events: fill {result['fill_s']} s, audit {result['audit_s']} s "
               f"(snapshot {result['audit_snapshot_s']} s; medians of {repeat}), budget {result['budget_s']} s, "
               f"within budget: {result['within_budget']}")
    typer.echo(f"stages: {result['stages_s']}")


def register(app: typer.Typer) -> None:
    app.command("audit")(audit_cmd)
