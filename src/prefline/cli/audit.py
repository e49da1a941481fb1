"""``prefline audit``: data-quality checks on the store, derived from :class:`AuditConfig`."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from prefline.audit.run import AuditConfig, AuditResult, run
from prefline.base.errors import PreflineError
from prefline.cli.options import run_stage, stage_command, unrecorded
from prefline.store.context import Context

SUMMARY_KEYS = ("alpha", "raw_agreement", "kappa", "position_bias", "length_bias",
                "chosen_longer", "tie_rate", "both_bad_rate", "cycles", "duplicates",
                "opening_duplicates", "leakage", "opening_leakage", "fast_annotations",
                "outliers", "judge_agreement")


def _summary(result: AuditResult, _: None) -> list[str]:
    m, s = result.metrics, result.scope
    lines = [f"audited {s.feedback} feedback events on {s.prompts} prompts "
             f"from {s.annotators} annotators"]
    width = max(map(len, SUMMARY_KEYS))
    lines += [f"  {key:<{width}}  {_value(m[key])}" for key in SUMMARY_KEYS]
    if result.report is not None:
        lines.append(f"report written to {result.report}")
    return lines


def _value(value: Any) -> str:
    """A metric as read: numbers rounded, a breakdown as ``k=v, ...`` (never a dict repr)."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items()) or "-"
    return str(value)


def _with_legacy_out(cfg: AuditConfig, legacy_out: str | None) -> AuditConfig:
    """``--out`` was audit's first name for ``--report``; kept hidden, with a note, so that
    old scripts still work while every command spells the report flag ``--report``."""
    if legacy_out is None:
        return cfg
    if cfg.report is not None and cfg.report != Path(legacy_out):
        raise PreflineError("give the report file once, with --report (--out is its old name)",
                            field="report")
    print("note: audit --out is deprecated; use --report", file=sys.stderr)
    return dataclasses.replace(cfg, report=Path(legacy_out))


def _body(cfg: AuditConfig, ctx: Context, *, as_json: bool, legacy_out: str | None) -> None:
    result = run_stage(run, _with_legacy_out(cfg, legacy_out), ctx, as_json=as_json,
                       record=unrecorded, summary=_summary)
    if result is not None and result.checks is not None:
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
                  extra=[inspect.Parameter(
                      "legacy_out", inspect.Parameter.KEYWORD_ONLY, default=None,
                      annotation=Annotated[str | None, typer.Option("--out", hidden=True)])])
