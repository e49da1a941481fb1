"""``prefline import`` and ``prefline export``: files in and out of the store."""

from __future__ import annotations

from collections.abc import Iterator

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import print_json
from prefline.cli.options import run_stage, stage_command, unrecorded
from prefline.formats.records import BadRecord
from prefline.store.context import Context
from prefline.store.export_stage import ExportConfig, ExportResult
from prefline.store.export_stage import run as run_export
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
    if summary.duplicates:
        shown = ", ".join(f"{line} (= line {first})" for line, first in summary.duplicates[:5])
        more = ", ..." if len(summary.duplicates) > 5 else ""
        typer.echo(f"counted {len(summary.duplicates)} repeated records once: lines {shown}{more}")
    if summary.rejects_path is not None:
        typer.echo(f"rejected {summary.rejected} bad records, written to {summary.rejects_path}")
    if summary.redaction is not None:
        red = summary.redaction
        found = ", ".join(f"{n} {e}" for e, n in red["entities"].items()) or "none"
        typer.echo(f"personal data (policy {red['policy']}): {found} in {red['texts']} texts "
                   f"scanned; {red['changed']} texts rewritten, {red['rejected']} refused")


def _export_summary(result: ExportResult, _: None) -> Iterator[str]:
    yield (f"wrote {result.rows} {result.task} rows ({result.split}) from snapshot "
           f"{result.snapshot_id} [{result.snapshot_hash[:12]}] to {result.out}")
    if result.pairs_from_rankings:
        yield (f"expanded {result.used_by_kind.get('ranking', 0)} ranking items into "
               f"{result.pairs_from_rankings} pairs (best first)")
    for kind, why in result.ignored_by_kind.items():
        yield f"left out {kind} items: " + "; ".join(f"{n} {r}" for r, n in why.items())


def _export_body(cfg: ExportConfig, ctx: Context, *, as_json: bool) -> None:
    run_stage(run_export, cfg, ctx, as_json=as_json, record=unrecorded, summary=_export_summary)


def register(app: typer.Typer) -> None:
    stage_command("import", ImportConfig, _import_body, app=app, command="import",
                  positional=("path",),
                  help="Validate a whole file, then store it in one transaction; re-importing "
                       "adds nothing.")
    stage_command("export", ExportConfig, _export_body, app=app, command="export",
                  positional=("out",),
                  help="Write a snapshot as TRL-compatible JSON Lines or Parquet for one training "
                       "task, saying which items were expanded or left out.")
