"""``prefline cache info|clear``: what prefline caches, where, how big; delete it safely.

The logic (kinds, sizes, the never-outside-the-root rule) is :mod:`prefline.base.cache`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from prefline.base import cache
from prefline.base.errors import PreflineError
from prefline.cli.common import JsonOption, print_json

cache_app = typer.Typer(
    help="Cached derived data (reference log-probs, converted models, judge replies): "
         "where it is and how big. The root is $PREFLINE_CACHE, else $PREFLINE_HOME/cache, "
         "else cache/ in the user data dir; everything in it is recomputed when missing.",
    no_args_is_help=True)


def _line(u: cache.Usage, width: int = 10) -> str:
    return (f"  {u.name:<{width}} {cache.human_bytes(u.bytes):>9}  {u.files:>6} files  "
            f"{u.path}")


@cache_app.command("info")
def info_cmd(as_json: JsonOption = False) -> None:
    """Where each cache is, its size and file count, and the size of the default run folders
    (results, never cleared)."""
    found = cache.info()
    if as_json:
        print_json({**found.to_json(), "total_bytes": found.total_bytes})
        return
    typer.echo(f"cache root: {found.root}  (set by {found.set_by}; "
               f"{cache.human_bytes(found.total_bytes)} in all)")
    for u in found.caches:
        typer.echo(_line(u))
        typer.echo(f"  {'':<10} {u.what}")
    for u in found.other:
        typer.echo(_line(u) + "  (not a prefline cache; left alone)")
    typer.echo(f"data dir: {found.data_dir}  ($PREFLINE_HOME; the default store and runs)")
    typer.echo(_line(found.runs) + "  (run folders: results, not a cache)")


@cache_app.command("clear")
def clear_cmd(
    what: Annotated[str, typer.Option(
        "--what", metavar="|".join(cache.CLEAR_CHOICES),
        help="Which cache to delete; all = every kind. Run folders and the store are never "
             "touched.")] = "all",
    yes: Annotated[bool, typer.Option(
        "--yes", help="Really delete (without it, say what would go and exit 2).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete cached entries under the cache root only (never anything outside it); the next
    run that needs them recomputes them."""
    plan = cache.clear(what, dry_run=not yes)
    if not yes:
        if not plan.removed:
            typer.echo(f"nothing to clear: no {what} cache under {plan.root}")
            return
        names = ", ".join(u.name for u in plan.removed)
        raise PreflineError(f"would delete {plan.files} files ({cache.human_bytes(plan.bytes)}) "
                            f"of {names} under {plan.root}; pass --yes to delete them")
    if as_json:
        print_json({**plan.to_json(), "bytes": plan.bytes, "files": plan.files})
        return
    if not plan.removed:
        typer.echo(f"nothing to clear: no {what} cache under {plan.root}")
    for u in plan.removed:
        typer.echo(f"deleted {u.name}: {u.files} files, {cache.human_bytes(u.bytes)} ({u.path})")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
