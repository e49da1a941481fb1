"""``prefline import`` and ``prefline export``: files in and out of the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import DbOption, JsonOption, print_json
from prefline.formats.records import BadRecord

_SKIP_HINT = "use --on-bad skip to import the other records and write rejects to a file"


def import_cmd(
    path: Annotated[Path, typer.Argument(help="File (.jsonl/.json/.csv/.parquet, .gz ok) or saved HF dataset folder.")],
    format: Annotated[str, typer.Option("--format", help="auto|jsonl|json|hh|csv|parquet|hf")] = "auto",
    source: Annotated[str | None, typer.Option(help="Source label (default: the file name).")] = None,
    annotator: Annotated[str | None, typer.Option(help="Annotator name (default: import:<source>).")] = None,
    annotator_kind: Annotated[str, typer.Option(help="human|ai_judge|implicit")] = "human",
    skip_identical: Annotated[bool, typer.Option(
        "--skip-identical", help="Skip pairs whose chosen equals rejected (default: only in HH transcripts).")] = False,
    on_bad: Annotated[str, typer.Option(
        "--on-bad", help="fail: any bad record stores nothing; skip: store the valid records and "
                         "write the bad ones (line, reason, record) to a rejects file.")] = "fail",
    rejects: Annotated[Path | None, typer.Option(
        help="Rejects file for --on-bad skip (default: <input name>.rejects.jsonl next to the input).")] = None,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Validate a whole file, then store it in one transaction; re-importing adds nothing."""
    from rich.progress import BarColumn, Progress, TextColumn

    from prefline.store.ingest import import_file

    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed} records"), transient=True, disable=json) as bar:
        task = bar.add_task(f"reading {path.name}", total=None)
        try:
            summary = import_file(
                path, db, format=format, source=source, annotator=annotator,
                annotator_kind=annotator_kind, skip_identical=skip_identical or None,
                on_bad=on_bad, rejects=rejects,
                progress=lambda n: bar.update(task, completed=n),
                stage=lambda s: bar.update(task, description=f"{s} {path.name}"))
        except BadRecord as exc:  # only raised under --on-bad fail: say how to go on
            raise PreflineError(f"{exc.message} ({_SKIP_HINT})", path=exc.path, line=exc.line,
                                field=exc.field) from None
    out = {"path": summary.path, "source": summary.source, "records": summary.records,
           "prompts_added": summary.prompts_added, "responses_added": summary.responses_added,
           "feedback_added": summary.feedback_added, "feedback_existing": summary.feedback_existing,
           "skipped_identical": summary.skipped_identical, "by_kind": summary.by_kind,
           "rejected": summary.rejected, "rejects_path": summary.rejects_path,
           "seconds": round(summary.seconds, 3)}
    if json:
        print_json(out)
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
    app.command("import")(import_cmd)
    app.command("export")(export_cmd)
