"""``prefline registry list|show``: registered artifacts and their lineage."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import DbOption, JsonOption, print_json, registry_app


def _describe(a: Any) -> dict[str, Any]:
    return {"id": a.id, "kind": a.kind, "name": a.name, "path": a.path, "status": a.status,
            "snapshot_id": a.snapshot_id, "snapshot_hash": a.snapshot_hash, "parent_id": a.parent_id,
            "code_version": a.code_version, "config": a.config, "metrics": a.metrics,
            "created_at": a.created_at}


@registry_app.command("list")
def list_cmd(kind: Annotated[str | None, typer.Option(help="Only this artifact kind.")] = None,
             db: DbOption = None, json: JsonOption = False) -> None:
    """Artifacts with kind, path, snapshot hash and parent."""
    from prefline.registry import list_artifacts

    arts = list_artifacts(kind, db)
    if json:
        print_json([_describe(a) for a in arts])
        return
    for a in arts:
        snap = (a.snapshot_hash or "-")[:12]
        parent = a.parent_id if a.parent_id is not None else "-"
        typer.echo(f"{a.id:>4}  {a.kind:<12} {a.status:<11} snap={snap:<12} parent={parent!s:<4} {a.path}")


@registry_app.command("show")
def show_cmd(artifact_id: Annotated[int, typer.Argument(help="Artifact id.")],
             db: DbOption = None, json: JsonOption = False) -> None:
    """One artifact and its lineage chain (itself, then its parents)."""
    from prefline.registry import lineage

    chain = lineage(artifact_id, db)
    if not chain:
        raise PreflineError(f"no artifact with id {artifact_id}", field="artifact_id")
    info = _describe(chain[0]) | {"lineage": [_describe(a) for a in chain]}
    if json:
        print_json(info)
        return
    for key, value in info.items():
        if key != "lineage":
            typer.echo(f"{key:>13}: {value}")
    typer.echo("      lineage: " + " <- ".join(f"{a.id}:{a.kind}" for a in chain))


def register(app: typer.Typer) -> None:
    """Commands live on ``registry_app``, mounted by ``prefline.cli``."""
