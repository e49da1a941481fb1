"""``prefline import`` and ``prefline export``: files in and out of the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import DbOption, JsonOption, print_json
from prefline.cli.options import stage_command
from prefline.formats.records import BadRecord
from prefline.store.context import Context
from prefline.store.imports import ImportConfig
from prefline.store.imports import run as run_import

_SKIP_HINT = "use --on-bad skip to import the other records and write rejects to a file"


def _import_body(cfg: ImportConfig, ctx: Context, *, as_json: bool) -> None:
    try:
        summary = run_import(cfg, ctx)
    except BadRecord as exc:  # only raised under on_bad=fail: say how to go on
        raise PreflineError(f"{exc.message} ({_SKIP_HINT})", path=exc.path, line=exc.line,
                            field=exc.field) from None
    if as_json:
        print_json(summary.to_json() | {"seconds": round(summary.seconds, 3)})
        return
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(summary.by_kind.items()))
    typer.echo(f"{summary.records} records ({kinds}) from {summary.source}: added "
               f"{summary.feedback_added} feedback, {summary.prompts_added} prompts, "
               f"{summary.responses_added} responses; {summary.feedback_existing} already stored "
               f"({summary.seconds:.1f}s)")
    if summary.skipped_identical:
        lines = ", ".join(map(str, summary.skipped_identical[:10]))
        more = ", ..." if len(summary.skipped_identical) > 10 else ""
        typer.echo(f"skipped {len(summary.skipped_identical)} pairs whose chosen equals rejected "
                   f"(lines {lines}{more})")
    if summary.rejects_path is not None:
        typer.echo(f"rejected {summary.rejected} bad records, written to {summary.rejects_path}")


def export_cmd(
    out: Annotated[Path, typer.Argument(help="Output JSONL file.")],
    task: Annotated[str, typer.Option("--task", help="dpo|reward|kto|ranking")],
    snapshot: Annotated[str | None, typer.Option(help="Snapshot id, name or hash prefix (default: latest).")] = None,
    split: Annotated[str, typer.Option(help="train|test|all")] = "all",
    style: Annotated[str, typer.Option(help="conversational (message lists) or standard (strings).")] = "conversational",
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Write a snapshot as TRL-compatible JSONL for one training task."""
    from prefline.formats.export import export_snapshot

    n, snap = export_snapshot(out, task, snapshot, split, db, style)
    result = {"out": str(out), "task": task, "split": split, "rows": n, "snapshot_id": snap.id,
              "snapshot_hash": snap.content_hash}
    if json:
        print_json(result)
    else:
        typer.echo(f"wrote {n} {task} rows ({split}) from snapshot {snap.id} "
                   f"[{snap.content_hash[:12]}] to {out}")


def register(app: typer.Typer) -> None:
    stage_command("import", ImportConfig, _import_body, app=app, command="import",
                  positional=("path",),
                  help="Validate a whole file, then store it in one transaction; re-importing "
                       "adds nothing.")
    app.command("export")(export_cmd)
