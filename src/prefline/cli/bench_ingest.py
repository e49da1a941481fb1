"""``prefline bench ingest``: records/s importing generated pairs into SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Annotated

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import JsonOption, bench_app, print_json

TARGETS = {"sqlite_records_per_s": 20_000, "postgres_records_per_s": 10_000}


def _http_bench(n: int) -> dict[str, object]:
    """The collection service's HTTP ingest benchmark on a fresh SQLite store, if installed."""
    import tempfile
    from pathlib import Path

    try:
        from prefline.collect.bench import run_http_bench
    except ImportError:
        raise PreflineError("--http needs prefline.collect.bench.run_http_bench, "
                            "which this installation does not have") from None
    with tempfile.TemporaryDirectory(prefix="prefline-bench-http-") as tmp:
        result = run_http_bench(f"sqlite:///{Path(tmp) / 'http.db'}", n_events=n)
    return {k if k.startswith("http") else f"http_{k}": v for k, v in result.items()}


@bench_app.command("ingest")
def bench_ingest_cmd(
    n: Annotated[int, typer.Option("--n", help="Generated pairwise records.")] = 100_000,
    pg_url: Annotated[str | None, typer.Option(help="PostgreSQL server URL (default: $PREFLINE_TEST_PG or scripts/pg-start.sh).")] = None,
    no_postgres: Annotated[bool, typer.Option("--no-postgres", help="SQLite only.")] = False,
    http: Annotated[bool, typer.Option("--http", help="Also measure the HTTP ingest API (prefline.collect.bench).")] = False,
    json: JsonOption = False,
) -> None:
    """Import N generated records into fresh stores and print records/s per backend."""
    from prefline.store.bench_ingest import run_ingest_bench

    if n < 1:
        raise PreflineError(f"--n must be positive, got {n}", field="n")
    result = run_ingest_bench(n, pg_url, postgres=not no_postgres)
    if http:
        result.update(_http_bench(n))
    if json:
        print_json(result)
        return
    for key, value in result.items():
        target = TARGETS.get(key)
        note = f"   (target >= {target:,})" if target else ""
        shown = f"{value:,}" if isinstance(value, int | float) else str(value)
        typer.echo(f"{key:>30}: {shown}{note}")


def register(app: typer.Typer) -> None:
    """Commands live on ``bench_app``, mounted by ``prefline.cli``."""
