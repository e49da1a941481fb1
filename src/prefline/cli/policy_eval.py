"""``prefline eval policy``: win rate, KL, length, diversity and refusals of A against B,
derived from :class:`PolicyEvalConfig`; the evaluation is recorded in the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from prefline.cli.common import eval_app
from prefline.cli.options import artifact, run_stage, stage_command
from prefline.evaluate.policy_config import PolicyEvalConfig
from prefline.store.context import Context

if TYPE_CHECKING:
    from prefline.evaluate.policy_result import PolicyEvalResult


def _body(cfg: PolicyEvalConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.evaluate.policy import run  # torch and transformers: load only when running

    run_stage(run, cfg, ctx, as_json=as_json,
              record=artifact("policy-eval", actor="cli:eval-policy"),
              summary=_summary, run_dir="eval-policy")


def _summary(result: PolicyEvalResult, art_id: int) -> list[str]:
    """The rich table is printed here (it is not plain lines); the artifact line follows."""
    _print_summary(result.to_json())
    return [f"evaluation: {result.path}  (artifact {art_id})"]


def _print_summary(result: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    from prefline.evaluate.policy_report import matrix_rows

    j, verdict = result["judge"], result["verdict"]
    assert isinstance(j, dict) and isinstance(verdict, dict)
    table = Table(title=f"policy vs baseline on {result['n_prompts']} prompts "
                        f"(headline: held-out judge {j['spec']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for r in matrix_rows(result):  # every judge, its role; the headline first
        table.add_row(f"win rate, {r['spec']} ({r['role']})",
                      f"{r['win_rate']:.1%} [{r['ci'][0]:.1%}, {r['ci'][1]:.1%}]")
    table.add_row(f"length-controlled win rate, {j['spec']}",
                  f"{j['length_controlled_win_rate']:.1%}")
    for key, label in (("kl", "as sampled"), ("kl_t1", "temperature 1")):
        kl = result.get(key)
        table.add_row(f"KL(policy‖baseline) {label}, nats/response",
                      f"{kl:.3f}" if isinstance(kl, float) else "not measured")
    for side in ("policy", "baseline"):
        s = result[side]
        assert isinstance(s, dict)
        table.add_row(f"{side}: mean length (words)", f"{s['mean_length_words']:.1f}")
        table.add_row(f"{side}: distinct-1 / distinct-2",
                      f"{s['distinct_1']:.3f} / {s['distinct_2']:.3f}")
    out = Console()
    out.print(table)
    out.print(verdict["text"])


stage_command("eval-policy", PolicyEvalConfig, _body, app=eval_app, command="eval policy",
              help="Compare policy A with baseline B on held-out prompts under a judge (ties "
                   "count half); record the evaluation with its inputs in the registry.",
              out_help="Run folder for eval.json (default: <data dir>/runs/eval-policy-<time>).")


def register(app: typer.Typer) -> None:
    """The command is added to the shared ``eval`` group above; nothing else to mount."""
