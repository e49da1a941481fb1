"""``prefline config show STAGE``: the effective settings of a stage, as TOML or JSON."""

from __future__ import annotations

from typing import Annotated

import typer

from prefline.base import config
from prefline.cli.common import parse_overrides, print_json
from prefline.cli.options import STAGE_COMMANDS, effective_config

config_app = typer.Typer(help="Stage settings: what a run would use.", no_args_is_help=True)


@config_app.command("show", context_settings={"allow_extra_args": True,
                                               "ignore_unknown_options": True})
def show_cmd(
    ctx: typer.Context,
    stage: Annotated[str, typer.Argument(help="Stage name, e.g. dpo, reward, demo (see `prefline config list`).")],
    config_file: Annotated[str | None, typer.Option("--config", help="TOML/YAML/JSON file to merge over the defaults.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of TOML.")] = False,
) -> None:
    """Print the settings STAGE would run with: defaults, then --config FILE, then key=value."""
    cfg = effective_config(stage, config_file, parse_overrides(ctx.args))
    if as_json:
        print_json(config.to_dict(cfg))
    else:
        typer.echo(config.to_toml(cfg), nl=False)


@config_app.command("list")
def list_cmd() -> None:
    """Stages whose settings `config show` can print, with their commands."""
    for name, sc in sorted(STAGE_COMMANDS.items()):
        typer.echo(f"{name:<14} prefline {sc.command:<22} {sc.config_cls.__module__}."
                   f"{sc.config_cls.__name__}")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
