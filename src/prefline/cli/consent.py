"""``prefline users consent USER [training|evaluation|none]``: record or show a user's consent.

Consent is a history (``consents`` rows, the latest wins); snapshots check it for their
``--purpose`` (:mod:`prefline.store.consent`). The command sits on the ``users`` group of
:mod:`prefline.cli.collect_admin`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from prefline.cli.collect_admin import users_app
from prefline.cli.common import DbOption, JsonOption, print_json


@users_app.command("consent")
def users_consent(
    user: Annotated[str, typer.Argument(help="The pseudonymous user id (as in feedback's user).")],
    purpose: Annotated[str | None, typer.Argument(
        help="training (training and evaluation), evaluation (evaluation only) or none "
             "(revoke). Omitted: show the user's consent history.",
        metavar="[training|evaluation|none]")] = None,
    db: DbOption = None, json_out: JsonOption = False,
) -> None:
    """Record a user's consent (it applies to the next snapshot; stored snapshots stay as
    they are), or show their consent history."""
    from prefline.base.stage import jsonable
    from prefline.store.consent import consent_history, set_consent
    from prefline.store.db import open_store

    engine = open_store(db)
    if purpose is not None:
        entry = set_consent(engine, user, purpose, actor="cli")
        print_json(jsonable(entry)) if json_out else typer.echo(
            f"consent of {user}: {entry.purpose} (from {entry.created_at:%Y-%m-%d %H:%M:%S} UTC)")
        return
    history = consent_history(engine, user)
    if json_out:
        print_json([jsonable(e) for e in history])
        return
    if not history:
        typer.echo(f"no consent recorded for {user} (their feedback stays out of snapshots)")
    for e in history:
        typer.echo(f"{e.created_at:%Y-%m-%d %H:%M:%S}  {e.purpose:<10}  by {e.actor}")


def register(app: typer.Typer) -> None:
    """The command is on ``users_app``, which :mod:`prefline.cli.collect_admin` mounts."""
