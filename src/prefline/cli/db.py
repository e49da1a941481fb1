"""``prefline db``: create or migrate the store."""

from __future__ import annotations

import typer

from prefline.cli.common import DbOption

db_app = typer.Typer(help="Create, migrate and inspect the store.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade_cmd(db: DbOption = None, revision: str = typer.Option("head", help="Target revision.")) -> None:
    """Create the store if needed and migrate it to the latest schema."""
    from prefline.store.db import current_revision, upgrade

    engine = upgrade(db, revision)
    typer.echo(f"store {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
