"""Options and helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from prefline.base.paths import data_dir

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Store URL or SQLite path (default: $PREFLINE_DB or the user data dir)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Rows as an aligned text table with a header (numbers right-aligned, booleans as
    yes/no, None as -); ``(none)`` when there are no rows. For --json, use print_json."""
    if not rows:
        typer.echo("(none)")
        return
    columns = columns or list(rows[0])
    cells = [[plain(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    right = [all(isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
                 for r in rows) for c in columns]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w)
                         for v, w, r in zip(values, widths, right, strict=True)).rstrip()

    typer.echo(line(columns))
    for row in cells:
        typer.echo(line(row))


def plain(value: Any, nested: bool = False) -> str:
    """A value as a reader wants it: ``-`` for None, yes/no, ``k=v, ...`` for a mapping and
    a comma list for a sequence (bracketed when nested), never a Python repr."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list | tuple):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        inner = ", ".join(f"{k}={plain(v, True)}" if isinstance(value, dict) else plain(v, True)
                          for k, v in items)
        if nested:
            return f"({inner})" if isinstance(value, dict) else f"[{inner}]"
        return inner or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["lr=1e-4", "--epochs", "2"]`` style overrides into a dict of strings."""
    out: dict[str, str] = {}
    i = 0
    while i < len(pairs):
        item = pairs[i]
        key = item.lstrip("-")
        if "=" in key:
            k, v = key.split("=", 1)
            out[k.replace("-", "_")] = v  # only the key: values like 1e-3 keep their dashes
            i += 1
            continue
        key = key.replace("-", "_")
        if i + 1 < len(pairs) and not pairs[i + 1].startswith("--"):
            out[key] = pairs[i + 1]
            i += 2
        else:
            out[key] = "true"
            i += 1
    return out


# Command groups that several stages add to (e.g. `train reward` and `train dpo` live in
# different modules). Stage modules do `@train_app.command("dpo")`; cli/__init__ mounts them.
train_app = typer.Typer(help="Train a reward model or a policy.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate a reward model or a policy.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks against peers, measured in the same run.", no_args_is_help=True)
snapshot_app = typer.Typer(help="Frozen, content-hashed training sets.", no_args_is_help=True)
registry_app = typer.Typer(help="Registered artifacts and their lineage.", no_args_is_help=True)


def default_run_dir(kind: str) -> str:
    """``<data dir>/runs/<kind>-<timestamp>``: where a training run goes without --out."""
    return str(data_dir() / "runs" / time.strftime(f"{kind}-%Y%m%d-%H%M%S"))
