"""``prefline store prune``: enforce per-source retention periods (derived from
:class:`~prefline.store.retention.PruneConfig`; the periods usually come from a file given
with ``--config``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import typer

from prefline.cli.options import run_stage, stage_command, unrecorded
from prefline.store.context import Context
from prefline.store.retention import PruneConfig

if TYPE_CHECKING:
    from prefline.store.retention import PruneResult

store_app = typer.Typer(help="Maintain the store's data: retention.", no_args_is_help=True)


def _summary(result: PruneResult, _: None) -> Iterator[str]:
    verb = "would delete" if result.dry_run else "deleted"
    counts = ", ".join(f"{n} {table}" for table, n in result.counts.items()) or "nothing"
    yield f"{verb}: {counts}" + (" (dry run: nothing was changed)" if result.dry_run else "")
    for source, n in result.expired_by_source.items():
        rows = "served chats" if source.startswith("served:") else "feedback rows"
        yield f"  {source}: {n} {rows} older than {result.cutoffs[source]}"
    for what, ids in (("snapshots", result.snapshots), ("artifacts", result.artifacts)):
        if ids:
            yield (f"{what} {'would be' if result.dry_run else 'now'} contains_forgotten_data: "
                   f"{', '.join(map(str, ids))}")


def _prune(cfg: PruneConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.store.retention import run

    run_stage(run, cfg, ctx, as_json=as_json, record=unrecorded, summary=_summary)


stage_command(
    "prune", PruneConfig, _prune, app=store_app, command="store prune",
    help="Delete feedback older than its source's retention period, then the snapshot items "
         "copied from it and the prompts and responses nothing else uses; snapshots and "
         "models built from it are flagged contains_forgotten_data. --dry-run counts only.")


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
