"""The ``prefline`` command line.

Each module listed in :data:`COMMAND_MODULES` adds its commands with ``register(app)``; a
new stage adds its module there. Stage commands are derived from the stage's config
(:mod:`prefline.cli.options`). Modules stay thin (parse, call, print) and import the stage
modules that load torch and transformers inside the command bodies, so ``prefline --help``
and ``prefline import`` start fast.
"""

from __future__ import annotations

import shlex
import sys

import typer

from prefline.base import interrupts
from prefline.base.errors import PreflineError
from prefline.cli import (
    audit,
    bench,
    cache,
    collect_admin,
    config,
    consent,
    db,
    demo,
    disagree,
    dpo,
    gate,
    generate,
    io,
    judge,
    online_dpo,
    personal_dpo,
    policy_eval,
    registry,
    reward,
    rl,
    serve,
    sft,
    snapshot,
    store,
)
from prefline.cli.common import bench_app, eval_app, registry_app, snapshot_app, train_app

app = typer.Typer(
    name="prefline",
    help="Preference optimisation of AI models: collect, audit, train, evaluate, roll out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


COMMAND_MODULES = (audit, bench, cache, collect_admin, config, consent, db, demo, disagree, dpo, gate,
                   generate, io, judge, online_dpo, personal_dpo, policy_eval, registry, reward, rl, serve, sft, snapshot,
                   store)
for _module in COMMAND_MODULES:
    _module.register(app)

app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(registry_app, name="registry")


def _usage_error(exc: Exception) -> None:
    """Exit with one sentence for a usage error (unknown option, a value of the wrong type,
    a missing argument); return for anything else. typer >= 0.29 ships its own copy of
    click, whose exceptions are not click's, so both are checked."""
    import click

    if isinstance(exc, typer.Abort | click.exceptions.Abort):
        sys.exit(1)
    if isinstance(exc, typer.TyperException | click.exceptions.ClickException) \
            and hasattr(exc, "format_message"):
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))


def main(argv: list[str] | None = None) -> None:
    """Entry point: one sentence on stderr and exit 2 for any PreflineError; on SIGINT or
    SIGTERM one line saying what was kept and how to continue, and exit 130 or 143."""
    args = list(sys.argv[1:] if argv is None else argv)
    interrupts.forget()
    try:
        with interrupts.sigterm_raises():
            code = app(args=args, prog_name="prefline", standalone_mode=False)
    except PreflineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except interrupts.INTERRUPTS as exc:
        _interrupted(args, exc)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        _usage_error(exc)
        raise
    # Non-standalone typer *returns* exit codes: 130 for a KeyboardInterrupt it caught (the
    # exception itself is gone) and N for typer.Exit(N).
    if code == 130:
        _interrupted(args, KeyboardInterrupt())
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


def _interrupted(args: list[str], exc: BaseException) -> None:
    print(interrupted_line(args, exc), file=sys.stderr)
    sys.exit(interrupts.exit_code(exc))


_RESUME_KEYS = {"resume", "no_resume", "train.resume"}


def interrupted_line(args: list[str], exc: BaseException) -> str:
    """``interrupted (SIGINT) at step 10 of 30; checkpoint saved in RUN/...; continue with:
    prefline train dpo ... --out RUN --resume`` (from the command's :class:`Kept` record)."""
    line = f"interrupted ({interrupts.signal_name(exc)})"
    kept = interrupts.kept()
    if kept is None:
        return line
    again = [a for a in args
             if a.lstrip("-").split("=", 1)[0].replace("-", "_") not in _RESUME_KEYS]
    if kept.run_folder is not None and not any(a == "--out" or a.startswith("--out=")
                                               for a in again):
        again += ["--out", str(kept.run_folder)]
    if kept.resume_flag:
        again.append(kept.resume_flag)
    return f"{line} {kept.what}; continue with: {shlex.join(['prefline', *again])}"
