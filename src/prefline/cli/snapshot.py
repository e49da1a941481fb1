"""``prefline snapshot create|list|show``: frozen, content-hashed training sets.

``create`` is derived from :class:`~prefline.store.snapshot_config.SnapshotConfig` (every
setting is an option, documented once); ``--kind`` and ``--segment`` are hand-written
because they may be repeated (``--kind pairwise --kind rating``, ``--segment style=concise
--segment locale=de``); ``--kind`` also takes a comma list.

Segment counts are printed k-anonymously: groups below ``min_group_size`` items are
suppressed and counted (:mod:`prefline.base.privacy`); ``--json`` and the stored stats keep
every count.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Annotated, Any

import typer

from prefline.base import config
from prefline.base.privacy import DEFAULT_MIN_GROUP_SIZE, k_anonymous, suppressed_note
from prefline.base.stage import jsonable
from prefline.cli.common import DbOption, JsonOption, plain, print_json, snapshot_app
from prefline.cli.options import run_stage, stage_command, unrecorded
from prefline.store.context import Context
from prefline.store.models import FEEDBACK_KINDS
from prefline.store.snapshot_config import DEFAULT_KINDS, Filters, SnapshotConfig

if TYPE_CHECKING:
    from prefline.store.snapshots import SnapshotResult


def _describe(snap: Any, names: dict[int, list[str]]) -> dict[str, Any]:
    """``name`` is the name it was created under; ``names`` every name that finds it now."""
    return {"id": snap.id, "name": snap.name, "names": names.get(snap.id, []),
            "content_hash": snap.content_hash, "created_at": snap.created_at,
            "recipe": snap.recipe, "stats": snap.stats,
            "contains_forgotten_data": snap.contains_forgotten_data}


def _by_kind(stats: dict[str, Any]) -> list[str]:
    """Per-kind lines (records in, items out, what was left out and why), then the items
    per stored kind and split. Snapshots made before kinds were recorded have only
    ``counts``; show what they have."""
    split_counts: dict[str, dict[str, int]] = {}
    for key, n in (stats.get("counts") or {}).items():
        kind, split = key.split("/")
        split_counts.setdefault(kind, {})[split] = n
    fed, made = stats.get("feedback_by_kind") or {}, stats.get("items_by_kind") or {}
    dropped = stats.get("dropped") or {}
    lines = []
    for kind in FEEDBACK_KINDS:
        items = made.get(kind, sum(split_counts.get(kind, {}).values()))
        if not (fed.get(kind) or items or dropped.get(kind)):
            continue
        records = f"{fed[kind]} records" if kind in fed else "? records"
        line = f"  {kind:<9} {records} -> {items} items" + (" (binary)" if kind == "implicit"
                                                             else "")
        left = dropped.get(kind) or {}
        if left:
            line += " | left out: " + "; ".join(f"{n} {why}" for why, n in left.items())
        lines.append(line)
    splits = [f"{kind} " + ", ".join(f"{s} {by[s]}" for s in ("train", "test") if s in by)
              for kind, by in sorted(split_counts.items())]
    lines.append(f"  {'split':<9} " + " | ".join(splits))
    return lines


def _personal(stats: dict[str, Any], k: int) -> list[str]:
    """Purpose, what consent left out, and items per segment value (groups of at least
    ``k`` items; the rest suppressed and counted). Older snapshots have none of these."""
    lines = []
    if "purpose" in stats:
        lines.append(f"  {'purpose':<9} {stats['purpose']}")
    excluded = stats.get("excluded") or {}
    for why, n in (excluded.get("records") or {}).items():
        users = (excluded.get("users") or {}).get(why)
        who = f" of {users} users" if users else ""
        lines.append(f"  {'consent':<9} left out {n} records{who}: {why}")
    for key, counts in (stats.get("segments") or {}).items():
        shown = k_anonymous(counts, k)
        parts = [f"{value} {n}" for value, n in counts.items() if value in shown]
        note = suppressed_note(counts, k)
        lines.append(f"  {'segment':<9} {key}: " + ", ".join(parts + ([note] if note else [])))
    return lines


def _create(cfg: SnapshotConfig, ctx: Context, *, as_json: bool, kind: list[str] | None,
            segment: list[str] | None) -> None:
    from prefline.store.snapshots import run

    # A flag wins over --config and key=value, like every other flag.
    if kind:
        cfg = config.build(SnapshotConfig, {"kinds": ",".join(kind)}, base=cfg,
                           command="snapshot create")
    if segment:
        cfg = dataclasses.replace(cfg, filters=dataclasses.replace(cfg.filters,
                                                                   segment=tuple(segment)))

    def summary(result: SnapshotResult, _: None) -> list[str]:
        state = "already stored, reused" if result.reused else "new"
        if cfg.name:
            state += f", named {cfg.name!r}"
        stats = result.stats
        return [f"snapshot {result.id} {result.content_hash[:12]} ({state}): {stats.items} "
                f"items on {stats.prompts} prompts from {stats.feedback} feedback records",
                *_by_kind(jsonable(stats)), *_personal(jsonable(stats), cfg.min_group_size)]

    run_stage(run, cfg, ctx, as_json=as_json, record=unrecorded, summary=summary)


_KIND_HELP = (f"{config.field_docs(SnapshotConfig)['kinds']} Repeat the option or give a "
              f"comma list. (default: {','.join(DEFAULT_KINDS)})")

stage_command(
    "snapshot", SnapshotConfig, _create, app=snapshot_app, command="snapshot create",
    help="Build a snapshot from the store: same content, same hash (no copy is stored). "
         "A name is unique (--replace moves it); naming stored content adds an alias.",
    skip=("kinds", "filters.segment"),
    extra=[inspect.Parameter("kind", inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[list[str] | None, typer.Option(
                                 "--kind", help=_KIND_HELP, metavar="KIND")]),
           inspect.Parameter("segment", inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[list[str] | None, typer.Option(
                                 "--segment", metavar="KEY=VALUE",
                                 help=config.field_docs(Filters)["segment"]
                                 + " Repeat the option for several attributes.")])])


@snapshot_app.command("list")
def list_cmd(db: DbOption = None, json: JsonOption = False) -> None:
    """All snapshots, oldest first."""
    from prefline.store.snapshots import list_snapshots, snapshot_names

    snaps, names = list_snapshots(db), snapshot_names(db)
    if json:
        print_json([_describe(s, names) for s in snaps])
        return
    for s in snaps:
        typer.echo(f"{s.id:>4}  {s.content_hash[:12]}  {s.stats.get('items', 0):>7} items  "
                   f"{s.created_at:%Y-%m-%d %H:%M}  {', '.join(names.get(s.id, []))}"
                   + ("  contains_forgotten_data" if s.contains_forgotten_data else ""))


@snapshot_app.command("show")
def show_cmd(ref: Annotated[str, typer.Argument(help="Id, name or content-hash prefix.")],
             db: DbOption = None, json: JsonOption = False,
             min_group_size: Annotated[int, typer.Option(
                 help="Smallest segment group shown (k-anonymity); --json shows every count.")
             ] = DEFAULT_MIN_GROUP_SIZE) -> None:
    """One snapshot: hash, recipe (filters, kinds, aggregation, ties, split, purpose),
    per-kind counts (records in, items out per split, what was left out and why), what
    consent left out, and items per segment value."""
    from prefline.store.snapshots import get_snapshot, snapshot_names

    info = _describe(get_snapshot(ref, db), snapshot_names(db))
    if json:
        print_json(info)
        return
    stats = info.pop("stats")
    for key, value in info.items():
        typer.echo(f"{key:>12}: {plain(value)}")
    typer.echo(f"{'items':>12}: {stats.get('items', 0)} on {stats.get('prompts', '?')} prompts "
               f"from {stats.get('feedback', '?')} feedback records")
    typer.echo(f"{'by kind':>12}:")
    for line in _by_kind(stats) + _personal(stats, min_group_size):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Commands live on ``snapshot_app``, mounted by ``prefline.cli``."""
