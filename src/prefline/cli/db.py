"""``prefline db``: create or migrate the store."""

from __future__ import annotations

import typer

from prefline.cli.common import DbOption, JsonOption, print_json, print_table

db_app = typer.Typer(help="Create, migrate and inspect the store.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade_cmd(db: DbOption = None, revision: str = typer.Option("head", help="Target revision.")) -> None:
    """Create the store if needed and migrate it to the latest schema."""
    from prefline.store.db import current_revision, upgrade

    engine = upgrade(db, revision)
    typer.echo(f"store {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")


@db_app.command("stats")
def stats_cmd(db: DbOption = None, json_out: JsonOption = False) -> None:
    """Rows per table, feedback events per kind and per source."""
    from prefline.store.db import store_stats

    stats = store_stats(db)
    if json_out:
        print_json(stats)
        return
    sections = (("table", "tables"), ("feedback kind", "feedback_by_kind"),
                ("feedback source", "feedback_by_source"))
    for i, (title, key) in enumerate(sections):
        if i:
            typer.echo("")
        print_table([{title: name, "rows": n} for name, n in stats[key].items()])


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
