"""``prefline registry list|show``: registered artifacts and their lineage graph."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import DbOption, JsonOption, print_json, registry_app


def _describe(a: Any) -> dict[str, Any]:
    return {"id": a.id, "kind": a.kind, "name": a.name, "path": a.path, "status": a.status,
            "snapshot_hash": a.snapshot_hash, "code_version": a.code_version,
            "config": a.config, "metrics": a.metrics, "created_at": a.created_at}


def _compact(ref: Any) -> str:
    """``role=#id`` for an artifact, ``role=s<id>`` for a snapshot, else the ref's tail."""
    if ref.artifact_id is not None:
        return f"{ref.role}=#{ref.artifact_id}"
    if ref.snapshot_id is not None:
        return f"{ref.role}=s{ref.snapshot_id}"
    text = str(ref.ref).rstrip("/").rsplit("/", 1)[-1]
    return f"{ref.role}={text if len(text) <= 16 else text[:15] + '…'}"


@registry_app.command("list")
def list_cmd(kind: Annotated[str | None, typer.Option(help="Only this artifact kind.")] = None,
             db: DbOption = None, json: JsonOption = False) -> None:
    """Artifacts with kind, status, data hash, inputs and path."""
    from prefline.base.stage import jsonable
    from prefline.registry import inputs_by_artifact, list_artifacts

    arts = list_artifacts(kind, db)
    inputs = inputs_by_artifact([a.id for a in arts], db)
    if json:
        print_json([_describe(a) | {"inputs": jsonable(inputs[a.id])} for a in arts])
        return
    for a in arts:
        data = (a.snapshot_hash or "-")[:12]
        refs = " ".join(_compact(r) for r in inputs[a.id]) or "-"
        typer.echo(f"{a.id:>4}  {a.kind:<12} {a.status:<11} data={data:<12} {a.path}  [{refs}]")


@registry_app.command("show")
def show_cmd(artifact_id: Annotated[int, typer.Argument(help="Artifact id.")],
             tree: Annotated[bool, typer.Option("--tree", help="The whole lineage graph, "
                                                "indented; shared ancestors shown once.")] = False,
             db: DbOption = None, json: JsonOption = False) -> None:
    """One artifact and its inputs; with --tree, everything it was built from."""
    from prefline.registry import describe_input, get_artifact, lineage_tree, render_tree

    art = get_artifact(artifact_id, db)
    if art is None:
        raise PreflineError(f"no artifact with id {artifact_id}", field="artifact_id")
    graph = lineage_tree(artifact_id, db, depth=None if tree else 1)
    info = _describe(art) | {"inputs": graph["inputs"]}
    if json:
        print_json(info | ({"tree": graph} if tree else {}))
        return
    for key, value in info.items():
        if key != "inputs":
            typer.echo(f"{key:>13}: {value}")
    if tree:
        typer.echo("      lineage:")
        for line in render_tree(graph):
            typer.echo("  " + line)
        return
    typer.echo("       inputs:" + ("" if graph["inputs"] else " -"))
    for entry in graph["inputs"]:
        typer.echo("    " + describe_input(entry))


def register(app: typer.Typer) -> None:
    """Commands live on ``registry_app``, mounted by ``prefline.cli``."""
