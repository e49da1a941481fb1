"""The ``prefline`` command line.

Each module listed in :data:`COMMAND_MODULES` adds its commands with ``register(app)``; a
new stage adds its module there. Stage commands are derived from the stage's config
(:mod:`prefline.cli.options`). Modules stay thin (parse, call, print) and import the stage
modules that load torch and transformers inside the command bodies, so ``prefline --help``
and ``prefline import`` start fast.
"""

from __future__ import annotations

import sys

import typer

from prefline.base.errors import PreflineError
from prefline.cli import (
    audit,
    bench,
    collect_admin,
    config,
    db,
    demo,
    dpo,
    generate,
    io,
    judge,
    policy_eval,
    registry,
    reward,
    serve,
    snapshot,
)
from prefline.cli.common import bench_app, eval_app, registry_app, snapshot_app, train_app

app = typer.Typer(
    name="prefline",
    help="Preference optimisation of AI models: collect, audit, train, evaluate, roll out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


COMMAND_MODULES = (audit, bench, collect_admin, config, db, demo, dpo, generate, io, judge,
                   policy_eval, registry, reward, serve, snapshot)
for _module in COMMAND_MODULES:
    _module.register(app)

app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(registry_app, name="registry")


def main(argv: list[str] | None = None) -> None:
    """Entry point: one sentence on stderr and exit 2 for any PreflineError."""
    try:
        app(args=argv, prog_name="prefline", standalone_mode=False)
    except PreflineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
