"""``prefline gate check``: declarative rules over recorded evaluations, before promotion."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prefline.cli.common import DbOption, JsonOption, print_json
from prefline.cli.registry import ActorOption, default_actor

gate_app = typer.Typer(help="Gates: rules over recorded evaluations that promotion requires.",
                       no_args_is_help=True)


@gate_app.command("check")
def check_cmd(
    gates: Annotated[Path, typer.Option("--gates", help="Gate file (TOML: rules = [...]).")],
    eval_ids: Annotated[list[int], typer.Option(
        "--eval", help="Evaluation artifact id (repeat for several: policy and reward).")],
    artifact: Annotated[int | None, typer.Option(
        help="The artifact the check is for (default: the policy the evaluation names).")]
    = None,
    baseline: Annotated[list[int] | None, typer.Option(
        help="Evaluation whose values 'baseline' in a rule means (default: the "
             "evaluation's own baseline side).")] = None,
    audit_report: Annotated[Path | None, typer.Option(
        "--audit", help="An audit report JSON (prefline audit --json) for audit.* rules.")]
    = None,
    actor: ActorOption = None, db: DbOption = None, json: JsonOption = False,
) -> None:
    """Check every rule; exit 1 listing each breach. The result is recorded against the
    artifact's content hash (promotion looks for a passing one)."""
    from prefline.rollout.gates import check

    res = check(db, gates, list(eval_ids), actor=actor or default_actor(), artifact_id=artifact,
                baselines=list(baseline or []), audit_report=audit_report)
    if json:
        print_json({"artifact_id": res.artifact_id, "artifact_hash": res.artifact_hash,
                    "passed": res.passed, "breaches": list(res.breaches),
                    "held": list(res.held), "evaluations": list(res.evaluations)})
    else:
        for line in res.held:
            typer.echo(f"  ok      {line}")
        for line in res.breaches:
            typer.echo(f"  BREACH  {line}")
        verdict = "passed" if res.passed else f"failed ({len(res.breaches)} breaches)"
        typer.echo(f"gate {verdict} for artifact {res.artifact_id} "
                   f"(hash {res.artifact_hash[:12]}), recorded")
    if not res.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(gate_app, name="gate")
