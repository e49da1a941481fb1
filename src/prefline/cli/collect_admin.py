"""``prefline users|keys|campaign``: administer the collection app from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prefline.cli.common import DbOption, JsonOption, print_json, print_table

users_app = typer.Typer(help="Annotation-app users (admins and annotators).", no_args_is_help=True)
keys_app = typer.Typer(help="Ingest API keys (shown once, stored hashed).", no_args_is_help=True)
campaign_app = typer.Typer(help="Annotation campaigns.", no_args_is_help=True)


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[str, typer.Option(help="admin or annotator.")] = "annotator",
    password: Annotated[str | None, typer.Option(
        help="Password (prompted for if omitted; prefer the prompt or $PREFLINE_PASSWORD).",
        envvar="PREFLINE_PASSWORD")] = None,
    db: DbOption = None,
) -> None:
    """Add a user who can log into the annotation app."""
    import prefline.store.collect_models  # noqa: F401
    from prefline.collect.auth import create_user
    from prefline.store.db import session_scope

    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with session_scope(db) as session:
        create_user(session, username, password, role=role)
    typer.echo(f"added {role} {username}")


@users_app.command("list")
def users_list(db: DbOption = None, json_out: JsonOption = False) -> None:
    """Users, their role and whether they can log in."""
    from sqlalchemy import select

    from prefline.store.collect_models import User
    from prefline.store.db import session_scope

    with session_scope(db) as session:
        rows = [{"username": u.username, "role": u.role, "active": u.active}
                for u in session.scalars(select(User).order_by(User.username))]
    print_json(rows) if json_out else print_table(rows)


PasswordOption = Annotated[str | None, typer.Option(
    help="New password (prompted for if omitted; prefer the prompt or $PREFLINE_PASSWORD).",
    envvar="PREFLINE_PASSWORD")]


@users_app.command("disable")
def users_disable(username: str, db: DbOption = None) -> None:
    """Stop a user from logging in and end their sessions now (their labels stay)."""
    from prefline.collect.auth import set_user_active
    from prefline.store.db import session_scope

    with session_scope(db) as session:
        set_user_active(session, username, False)
    typer.echo(f"disabled {username}")


@users_app.command("enable")
def users_enable(username: str, db: DbOption = None) -> None:
    """Let a disabled user log in again."""
    from prefline.collect.auth import set_user_active
    from prefline.store.db import session_scope

    with session_scope(db) as session:
        set_user_active(session, username, True)
    typer.echo(f"enabled {username}")


@users_app.command("reset-password")
def users_reset_password(username: str, password: PasswordOption = None,
                         db: DbOption = None) -> None:
    """Set a new password for a user and end their sessions."""
    from prefline.collect.auth import set_password
    from prefline.store.db import session_scope

    if password is None:
        password = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    with session_scope(db) as session:
        set_password(session, username, password)
    typer.echo(f"reset the password of {username}")


@users_app.command("forget")
def users_forget(
    user: Annotated[str, typer.Argument(help="Pseudonymous user id (as feedback was stored "
                                              "under) or app username.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete or irreversibly anonymise everything the store holds about USER: feedback,
    prompts and responses only they used, served-response logs, consents, app account and
    snapshot items. Snapshots and models built from the data are flagged
    contains_forgotten_data; the audit log gets a tombstone without content."""
    from prefline.store.forget import forget_user

    if not yes:
        typer.confirm(f"forget user {user}? This cannot be undone", abort=True)
    result = forget_user(db, user, actor="cli")
    if json_out:
        print_json(result.to_json())
        return
    counts = ", ".join(f"{n} {table}" for table, n in result.counts.items() if n) or "no rows"
    typer.echo(f"forgot the user: {counts}; tombstone audit_log #{result.tombstone_id}")
    for what, ids in (("snapshots", result.snapshots), ("artifacts", result.artifacts)):
        if ids:
            typer.echo(f"{what} now contains_forgotten_data: {', '.join(map(str, ids))}")


@keys_app.command("create")
def keys_create(
    name: str,
    rate: Annotated[float, typer.Option(help="Sustained events per second.")] = 50.0,
    burst: Annotated[int, typer.Option(help="Events allowed at once (also the max batch).")] = 1000,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create an ingest key and print it; it cannot be shown again."""
    from prefline.collect.auth import create_api_key
    from prefline.store.db import session_scope

    with session_scope(db) as session:
        key = create_api_key(session, name, rate_per_s=rate, burst=burst)
    if json_out:
        print_json({"name": name, "key": key})
    else:
        typer.echo(key)


@keys_app.command("list")
def keys_list(db: DbOption = None, json_out: JsonOption = False) -> None:
    """Ingest keys by name and public prefix (never the key), with limits and last use."""
    from sqlalchemy import select

    from prefline.store.collect_models import ApiKey
    from prefline.store.db import session_scope

    with session_scope(db) as session:
        rows = [{"name": k.name, "prefix": k.prefix, "rate_per_s": k.rate_per_s,
                 "burst": k.burst, "revoked": k.revoked,
                 "created_at": k.created_at.isoformat(timespec="seconds"),
                 "last_used_at": k.last_used_at.isoformat(timespec="seconds")
                 if k.last_used_at else None}
                for k in session.scalars(select(ApiKey).order_by(ApiKey.name))]
    print_json(rows) if json_out else print_table(rows)


@keys_app.command("revoke")
def keys_revoke(name_or_prefix: str, db: DbOption = None) -> None:
    """Revoke a key by name or prefix: requests with it are refused from now on."""
    from prefline.collect.auth import revoke_api_key
    from prefline.store.db import session_scope

    with session_scope(db) as session:
        revoke_api_key(session, name_or_prefix)
    typer.echo(f"revoked {name_or_prefix}")


@campaign_app.command("create")
def campaign_create(
    name: str,
    kind: Annotated[str, typer.Option(help="pairwise, rating or ranking.")] = "pairwise",
    criteria: Annotated[str, typer.Option(help="Comma-separated criteria.")] = "",
    overlap: Annotated[int, typer.Option(help="Annotators per item.")] = 1,
    blind: Annotated[bool, typer.Option(help="Annotators never see others' labels.")] = True,
    tag: Annotated[list[str] | None, typer.Option(help="Only prompts with this tag.")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only responses of this model.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many items.")] = None,
    k: Annotated[int, typer.Option(help="Responses per ranking item.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed for choosing pairs.")] = 0,
    instructions: Annotated[str | None, typer.Option(help="Shown above every task.")] = None,
    rubric: Annotated[Path | None, typer.Option(help=(
        "Rating anchors shown beside each scale: a TOML or JSON file mapping criterion to "
        "{score: meaning}, e.g. helpful = {1 = \"ignores it\", 5 = \"answers fully\"}."))] = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create a campaign from prompts and responses already in the store."""
    from prefline.collect.campaigns import Selection, create_campaign, load_rubric, progress
    from prefline.store.db import session_scope

    sel = Selection(tags=tuple(tag or ()), models=tuple(model or ()), limit=limit, k=k, seed=seed)
    crit = [c.strip() for c in criteria.split(",") if c.strip()]
    anchors = load_rubric(rubric) if rubric is not None else None
    with session_scope(db) as session:
        c = create_campaign(session, name, kind, crit, overlap=overlap, blind=blind,
                            selection=sel, instructions=instructions, rubric=anchors)
        out = {"id": c.id, "name": c.name, **progress(session, c)}
    if json_out:
        print_json(out)
    else:
        typer.echo(f"campaign {out['id']} {name}: {out['items']} items x {overlap} labels")


@campaign_app.command("list")
def campaign_list(db: DbOption = None, json_out: JsonOption = False) -> None:
    """Campaigns with their kind and labels done out of needed."""
    from sqlalchemy import select

    from prefline.collect.campaigns import progress
    from prefline.store.collect_models import Campaign
    from prefline.store.db import session_scope

    with session_scope(db) as session:
        rows = [{"id": c.id, "name": c.name, "kind": c.kind, **progress(session, c)}
                for c in session.scalars(select(Campaign).order_by(Campaign.id))]
    if json_out:
        print_json(rows)
    else:
        print_table([{"id": r["id"], "name": r["name"], "kind": r["kind"],
                      "labels": f"{r['labels_done']}/{r['labels_needed']}"} for r in rows])


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")
    app.add_typer(campaign_app, name="campaign")
