"""``prefline serve``: the annotation UI and ingest API on the store, run by uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from prefline.cli.common import DbOption


def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    secure_cookies: Annotated[bool, typer.Option(help="HTTPS-only cookies (behind TLS).")] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the annotation UI (/), admin pages (/admin) and ingest API (/api/v1, docs at /docs)."""
    import uvicorn

    from prefline.collect import create_app

    app = create_app(db, secure_cookies=secure_cookies)
    # One worker process: rate-limit buckets and caches live in it. httptools/uvloop are
    # used when installed ("auto") and roughly halve per-request overhead.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                http="auto", loop="auto", timeout_graceful_shutdown=5)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
