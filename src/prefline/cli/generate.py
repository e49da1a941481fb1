"""``prefline generate``: sample K responses per prompt, derived from :class:`GenerateConfig`."""

from __future__ import annotations

import typer

from prefline.cli.common import print_json
from prefline.cli.options import stage_command
from prefline.generate.run import GenerateConfig, run
from prefline.store.context import Context


def _body(cfg: GenerateConfig, ctx: Context, *, as_json: bool) -> None:
    if cfg.best_of is not None:
        return _best_of_n(cfg, ctx, as_json=as_json)
    result = run(cfg, ctx)
    if as_json:
        print_json(result.to_json())
    else:
        typer.echo(f"{result.responses} responses for {result.prompts} prompts -> {result.out} "
                   f"({result.tokens_per_s} new tokens/s)")


def _best_of_n(cfg: GenerateConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.generate.best_of_n import run_best_of_n

    result = run_best_of_n(cfg, ctx)
    if as_json:
        print_json(result.to_json())
        return
    gen = result.generation
    typer.echo(f"best of {cfg.best_of} for {gen.prompts} prompts by {result.scorer}: mean score "
               f"{result.mean_best_score:.4f} picked vs {result.mean_score:.4f} per sample -> "
               f"{gen.out}")


def register(app: typer.Typer) -> None:
    """``generate`` is a top-level command, so it is derived onto the main app here."""
    stage_command("generate", GenerateConfig, _body, app=app, command="generate",
                  help="Sample --n responses per prompt from a policy (batched, KV cache, "
                       "seeded); write them to --out and store them. --best-of N with --reward "
                       "or --judge also scores N candidates and marks the best.")
