"""``prefline generate``: sample K responses per prompt, derived from :class:`GenerateConfig`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from prefline.cli.options import run_stage, stage_command, unrecorded
from prefline.generate.run import GenerateConfig, GenerateResult, run
from prefline.store.context import Context

if TYPE_CHECKING:
    from prefline.generate.best_of_n import BestOfNResult


def _body(cfg: GenerateConfig, ctx: Context, *, as_json: bool) -> None:
    if cfg.best_of is not None:
        return _best_of_n(cfg, ctx, as_json=as_json)
    run_stage(run, cfg, ctx, as_json=as_json, record=unrecorded, summary=_summary)


def _summary(result: GenerateResult, _: None) -> list[str]:
    return [f"{result.responses} responses for {result.prompts} prompts -> {result.out} "
            f"({result.tokens_per_s} new tokens/s)"]


def _best_of_n(cfg: GenerateConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.generate.best_of_n import run_best_of_n

    def summary(result: BestOfNResult, _: None) -> list[str]:
        gen = result.generation
        return [f"best of {cfg.best_of} for {gen.prompts} prompts by {result.scorer}: mean "
                f"score {result.mean_best_score:.4f} picked vs {result.mean_score:.4f} per "
                f"sample -> {gen.out}"]

    run_stage(run_best_of_n, cfg, ctx, as_json=as_json, record=unrecorded, summary=summary)


def register(app: typer.Typer) -> None:
    """``generate`` is a top-level command, so it is derived onto the main app here."""
    stage_command("generate", GenerateConfig, _body, app=app, command="generate",
                  help="Sample --n responses per prompt from a policy (batched, KV cache, "
                       "seeded); write them to --out and store them. --best-of N with --reward "
                       "or --judge also scores N candidates and marks the best.")
