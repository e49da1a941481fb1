"""``prefline serve``: the annotation UI and ingest API on the store, run by uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.cli.common import DbOption
from prefline.pii.config import RedactionConfig
from prefline.pii.redactor import Redactor, redactor_for


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
    pii_config: Annotated[Path | None, typer.Option(
        help="TOML/YAML/JSON file of redaction settings (pii_default, pii_policies, "
             "pii_patterns, ...; see docs/privacy.md).")] = None,
    pii_default: Annotated[str | None, typer.Option(
        help="Policy for ingest-API sources (api:<key name>) that --pii-policies does not "
             "name: redact | hash | reject | keep (default keep).")] = None,
    pii_policies: Annotated[str | None, typer.Option(
        help='Source (or glob) -> policy as a JSON object, e.g. \'{"api:*": "redact"}\'.')]
    = None,
) -> None:
    """Serve the annotation UI (/), admin pages (/admin, rollout at /admin/rollout), the ingest
    API (/api/v1, docs at /docs) and registered policies (OpenAI-compatible /v1/chat/completions)."""
    import uvicorn

    from prefline.collect import create_app

    upstreams = parse_upstreams(upstream or [])
    redactor = serve_redactor(pii_config, pii_default, pii_policies)
    app = create_app(db, secure_cookies=secure_cookies)
    app.state.collect.extra["upstreams"] = upstreams
    app.state.collect.redactor = redactor
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


def serve_redactor(path: Path | None, default: str | None,
                   policies: str | None) -> Redactor | None:
    """The ingest API's redactor from ``--pii-config`` and the two flags (flags win); a hash
    policy without its salt fails here, before the server starts."""
    given = {k: v for k, v in (("pii_default", default), ("pii_policies", policies))
             if v is not None}
    cfg = config.load(RedactionConfig, path, given, command="serve")
    hashed = cfg.pii_default == "hash" or "hash" in cfg.pii_policies.values()
    redactor = redactor_for(cfg)
    if redactor is not None and hashed and not redactor.salt:
        raise PreflineError(f"policy hash needs a secret salt in ${cfg.pii_salt_env} (unset or "
                            "empty)", field="pii_default" if cfg.pii_default == "hash"
                            else "pii_policies")
    return redactor


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
