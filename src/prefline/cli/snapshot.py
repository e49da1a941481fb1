"""``prefline snapshot create|list|show``: frozen, content-hashed training sets."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import DbOption, JsonOption, print_json, snapshot_app


def _when(value: str | None, field: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise PreflineError(f"expected an ISO date or time like 2026-01-31T12:00, got {value!r}",
                            field=field) from None
    if when.tzinfo is not None:  # the store keeps naive UTC
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when


def _describe(snap: Any) -> dict[str, Any]:
    return {"id": snap.id, "name": snap.name, "content_hash": snap.content_hash,
            "created_at": snap.created_at, "recipe": snap.recipe, "stats": snap.stats}


@snapshot_app.command("create")
def create_cmd(
    name: Annotated[str | None, typer.Option(help="A name to find it by.")] = None,
    source: Annotated[str | None, typer.Option(help="Only feedback from this source.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only prompts with this tag.")] = None,
    annotator_kind: Annotated[str | None, typer.Option(help="human|ai_judge|implicit")] = None,
    since: Annotated[str | None, typer.Option(help="Feedback at or after this time (ISO, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Feedback before this time (ISO, UTC).")] = None,
    aggregate: Annotated[str, typer.Option(help="majority|bt (Bradley-Terry)")] = "majority",
    ties: Annotated[str, typer.Option(help="drop|keep|half")] = "drop",
    test_fraction: Annotated[float, typer.Option(help="Share of prompts in the test split.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the prompt-grouped split.")] = 0,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Build a snapshot from the store (same content → same hash, no copy stored)."""
    from prefline.store.snapshots import Filters, create_snapshot

    filters = Filters(source=source, tag=tag, annotator_kind=annotator_kind,
                      since=_when(since, "since"), until=_when(until, "until"))
    snap = create_snapshot(db, name, filters=filters, aggregate=aggregate, ties=ties,
                           test_fraction=test_fraction, seed=seed)
    if json:
        print_json(_describe(snap))
    else:
        typer.echo(f"snapshot {snap.id} {snap.content_hash[:12]}: {snap.stats['items']} items "
                   f"({snap.stats['counts']}), {snap.stats['ties_dropped']} ties dropped")


@snapshot_app.command("list")
def list_cmd(db: DbOption = None, json: JsonOption = False) -> None:
    """All snapshots, oldest first."""
    from prefline.store.snapshots import list_snapshots

    snaps = list_snapshots(db)
    if json:
        print_json([_describe(s) for s in snaps])
        return
    for s in snaps:
        typer.echo(f"{s.id:>4}  {s.content_hash[:12]}  {s.stats.get('items', 0):>7} items  "
                   f"{s.created_at:%Y-%m-%d %H:%M}  {s.name or ''}")


@snapshot_app.command("show")
def show_cmd(ref: Annotated[str, typer.Argument(help="Id, name or content-hash prefix.")],
             db: DbOption = None, json: JsonOption = False) -> None:
    """One snapshot: hash, recipe (filters, aggregation, ties, split) and counts."""
    from prefline.store.snapshots import get_snapshot

    info = _describe(get_snapshot(ref, db))
    if json:
        print_json(info)
        return
    for key, value in info.items():
        typer.echo(f"{key:>12}: {value}")


def register(app: typer.Typer) -> None:
    """Commands live on ``snapshot_app``, mounted by ``prefline.cli``."""
