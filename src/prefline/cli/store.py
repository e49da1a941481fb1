"""``prefline store prune``: enforce per-source retention periods (derived from
:class:`~prefline.store.retention.PruneConfig`; the periods usually come from a file given
with ``--config``)."""

from __future__ import annotations

import typer

from prefline.cli.common import print_json
from prefline.cli.options import stage_command
from prefline.store.context import Context
from prefline.store.retention import PruneConfig

store_app = typer.Typer(help="Maintain the store's data: retention.", no_args_is_help=True)


def _prune(cfg: PruneConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.store.retention import run

    result = run(cfg, ctx)
    if as_json:
        print_json(result.to_json())
        return
    verb = "would delete" if result.dry_run else "deleted"
    counts = ", ".join(f"{n} {table}" for table, n in result.counts.items()) or "nothing"
    typer.echo(f"{verb}: {counts}" + (" (dry run: nothing was changed)" if result.dry_run else ""))
    for source, n in result.expired_by_source.items():
        rows = "served chats" if source.startswith("served:") else "feedback rows"
        typer.echo(f"  {source}: {n} {rows} older than {result.cutoffs[source]}")
    for what, ids in (("snapshots", result.snapshots), ("artifacts", result.artifacts)):
        if ids:
            typer.echo(f"{what} {'would be' if result.dry_run else 'now'} contains_forgotten_data: "
                       f"{', '.join(map(str, ids))}")


stage_command(
    "prune", PruneConfig, _prune, app=store_app, command="store prune",
    help="Delete feedback older than its source's retention period, then the snapshot items "
         "copied from it and the prompts and responses nothing else uses; snapshots and "
         "models built from it are flagged contains_forgotten_data. --dry-run counts only.")


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
