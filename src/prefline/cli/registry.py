"""``prefline registry list|show``: registered artifacts and their lineage graph."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import DbOption, JsonOption, plain, print_json, registry_app


def _describe(a: Any) -> dict[str, Any]:
    return {"id": a.id, "kind": a.kind, "name": a.name, "path": a.path, "status": a.status,
            "snapshot_hash": a.snapshot_hash, "code_version": a.code_version,
            "config": a.config, "metrics": a.metrics, "created_at": a.created_at,
            "contains_forgotten_data": a.contains_forgotten_data}


FORGOTTEN_MARK = "  contains_forgotten_data"
"""Appended to a listing line whose artifact or snapshot was built from since-deleted data."""


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
        typer.echo(f"{a.id:>4}  {a.kind:<12} {a.status:<11} data={data:<12} {a.path}  [{refs}]"
                   + (FORGOTTEN_MARK if a.contains_forgotten_data else ""))


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
            typer.echo(f"{key:>13}: {plain(value)}")
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


# ---------------------------------------------------------------- lifecycle (issue 13)

def default_actor() -> str:
    """``cli:<login name>``: who ran the command, for the audit log."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")]
ActorOption = Annotated[str | None, typer.Option(
    "--actor", help="Who, for the audit log (default: cli:<login name>).")]


@registry_app.command("promote")
def promote_cmd(
    artifact_id: Annotated[int, typer.Argument(help="Artifact id.")],
    reason: ReasonOption,
    to: Annotated[str | None, typer.Option(
        help="Target status (default: the next step: candidate → staging → canary → "
             "production).")] = None,
    flag: Annotated[str | None, typer.Option(
        help="The served model name (the flag) for canary/production (default: default).")]
    = None,
    percent: Annotated[float | None, typer.Option(
        help="Canary share of users in % (default 5).")] = None,
    actor: ActorOption = None, db: DbOption = None, json: JsonOption = False,
) -> None:
    """Move an artifact one lifecycle step on; leaving candidate needs a passing gate check."""
    from prefline.rollout.actions import promote

    out = promote(db, artifact_id, actor=actor or default_actor(), reason=reason, to=to,
                  flag=flag, percent=percent)
    if json:
        print_json(out)
    else:
        where = f" (flag {out['flag']})" if out["flag"] else ""
        typer.echo(f"artifact {out['id']}: {out['old']} → {out['new']}{where}")


@registry_app.command("rollback")
def rollback_cmd(
    artifact_id: Annotated[int, typer.Argument(help="Artifact id.")],
    reason: ReasonOption, actor: ActorOption = None, db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Take a staging, canary or production artifact out of service (production hands
    its flag back to the previous production)."""
    from prefline.rollout.actions import rollback

    out = rollback(db, artifact_id, actor=actor or default_actor(), reason=reason)
    if json:
        print_json(out)
        return
    back = f"; artifact {out['restored']} is production again" if out["restored"] else ""
    typer.echo(f"artifact {out['id']}: {out['old']} → rolled_back{back}")


@registry_app.command("flag")
def flag_cmd(
    name: Annotated[str, typer.Argument(help="Flag (served model name).")],
    reason: ReasonOption,
    percent: Annotated[float | None, typer.Option(help="Canary share of users in %.")] = None,
    allow: Annotated[list[str] | None, typer.Option(
        help="Only these segments may see the candidate (repeat; '' clears).")] = None,
    deny: Annotated[list[str] | None, typer.Option(
        help="These segments never see the candidate (repeat; '' clears).")] = None,
    actor: ActorOption = None, db: DbOption = None, json: JsonOption = False,
) -> None:
    """Change a flag's canary share or segments at run time (servers pick it up, no restart)."""
    from prefline.rollout.actions import set_traffic

    out = set_traffic(db, name, actor=actor or default_actor(), reason=reason, percent=percent,
                      allow=None if allow is None else [a for a in allow if a],
                      deny=None if deny is None else [d for d in deny if d])
    print_json(out) if json else typer.echo(f"flag {name}: " + ", ".join(
        f"{k}={v}" for k, v in out.items() if k != "flag"))


@registry_app.command("status")
def status_cmd(db: DbOption = None, json: JsonOption = False) -> None:
    """Every flag: its production and canary arms, share and segments, with live telemetry."""
    from prefline.rollout.actions import status
    from prefline.rollout.telemetry import arm_metrics

    flags = status(db)
    for f in flags:
        f["telemetry"] = arm_metrics(db, f["flag"])
    if json:
        print_json(flags)
        return
    if not flags:
        typer.echo("no flags yet: promote a policy to canary or production")
    for f in flags:
        typer.echo(f"{f['flag']}: canary {f['percent']:g}%")
        for arm in ("production", "candidate"):
            a = f[arm]
            tel = f["telemetry"].get(arm) or {}
            desc = "-" if a is None else f"artifact {a['id']} ({a['status']})" + (
                FORGOTTEN_MARK if a.get("contains_forgotten_data") else "")
            typer.echo(f"  {arm:<10} {desc}  served={tel.get('served', 0)} "
                       f"thumbs_up={_fmt(tel.get('thumbs_up'))}")


def _fmt(metric: dict[str, Any] | None) -> str:
    if not metric or metric.get("mean") is None:
        return "-"
    return f"{metric['mean']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}] (n={metric['n']})"
