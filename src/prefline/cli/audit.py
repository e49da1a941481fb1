"""``prefline audit``: data-quality checks on the store, derived from :class:`AuditConfig`."""

from __future__ import annotations

import sys

import typer

from prefline.audit.run import AuditConfig, AuditResult, run
from prefline.cli.common import print_json
from prefline.cli.options import stage_command
from prefline.store.context import Context

SUMMARY_KEYS = ("alpha", "raw_agreement", "kappa", "position_bias", "length_bias",
                "chosen_longer", "tie_rate", "both_bad_rate", "cycles", "duplicates",
                "opening_duplicates", "leakage", "opening_leakage", "fast_annotations",
                "outliers", "judge_agreement")


def _summary(result: AuditResult) -> str:
    m, s = result.metrics, result.scope
    lines = [f"audited {s.feedback} feedback events on {s.prompts} prompts "
             f"from {s.annotators} annotators"]
    lines += [f"  {key:<17} {m[key]}" for key in SUMMARY_KEYS]
    return "\n".join(lines)


def _body(cfg: AuditConfig, ctx: Context, *, as_json: bool) -> None:
    result = run(cfg, ctx)
    if as_json:
        print_json(result.to_json())
    else:
        typer.echo(_summary(result))
        if result.report is not None:
            typer.echo(f"report written to {result.report}")
    if result.checks is not None:
        for item in result.checks.not_evaluated:
            print(f"not evaluated: {item['rule']} ({item['reason']})", file=sys.stderr)
        if result.failed:
            print("audit failed: " + "; ".join(result.checks.breached), file=sys.stderr)
            # sys.exit, not typer.Exit: prefline's main runs click with standalone_mode=False,
            # which would turn typer.Exit into a return value and exit 0.
            sys.exit(1)


def register(app: typer.Typer) -> None:
    """``audit`` is a top-level command, so it is derived onto the main app here."""
    stage_command("audit", AuditConfig, _body, app=app, command="audit",
                  help="Agreement, bias, duplicate, leakage and hygiene checks on the collected "
                       "feedback (the whole store, or one snapshot).",
                  flags={"report": ("--report", "--out")})
