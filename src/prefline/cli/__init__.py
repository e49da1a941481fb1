"""The ``prefline`` command line.

Each module in this package that defines ``register(app)`` adds its commands; modules are
discovered, so a stage adds a command group by adding one file. Modules stay thin (parse,
call, print) and import heavy libraries (torch, transformers) inside the command bodies so
``prefline --help`` and ``prefline import`` start fast.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from prefline.base.errors import PreflineError

app = typer.Typer(
    name="prefline",
    help="Preference optimisation of AI models: collect, audit, train, evaluate, roll out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()

from prefline.cli.common import bench_app, eval_app, registry_app, snapshot_app, train_app  # noqa: E402

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
