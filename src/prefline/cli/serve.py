"""``prefline serve``: the annotation UI and ingest API on the store, run by uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import DbOption


def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    secure_cookies: Annotated[bool, typer.Option(help="HTTPS-only cookies (behind TLS).")] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    upstream: Annotated[list[str] | None, typer.Option(
        help="ARTIFACT_ID=URL: serve this registered policy from an OpenAI-compatible server "
             "(URL ends in /v1, e.g. vLLM); repeat per artifact. Others run in process.")]
    = None,
) -> None:
    """Serve the annotation UI (/), admin pages (/admin, rollout at /admin/rollout), the ingest
    API (/api/v1, docs at /docs) and registered policies (OpenAI-compatible /v1/chat/completions)."""
    import uvicorn

    from prefline.collect import create_app

    upstreams = parse_upstreams(upstream or [])
    app = create_app(db, secure_cookies=secure_cookies)
    app.state.collect.extra["upstreams"] = upstreams
    # One worker process: rate-limit buckets and caches live in it. httptools/uvloop are
    # used when installed ("auto") and roughly halve per-request overhead.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                http="auto", loop="auto", timeout_graceful_shutdown=5)


def parse_upstreams(values: list[str]) -> dict[int, str]:
    """``["5=http://host:8001/v1", ...]`` → ``{5: "http://host:8001/v1"}``."""
    out: dict[int, str] = {}
    for value in values:
        aid, sep, url = value.partition("=")
        if not sep or not aid.strip().isdigit() or not url.startswith(("http://", "https://")):
            raise PreflineError(f"--upstream {value!r}: expected ARTIFACT_ID=http(s)://HOST/v1",
                                field="upstream")
        out[int(aid)] = url.strip()
    return out


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
