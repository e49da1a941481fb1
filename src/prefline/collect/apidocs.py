"""API docs that work offline and under the app's CSP: Swagger UI at /docs, ReDoc at /redoc.

FastAPI's own pages load their scripts from a CDN and start them with an inline script; the
CSP forbids both (and an annotation server is often offline). Here the assets come from the
``fastapi-offline`` package, served at ``/static/apidocs/``, and the pages start them from
``/static/apidocs.js``: no inline script, no other origin. Both viewers inject ``<style>``
elements and Swagger UI draws icons from ``data:`` images, so these two pages (and no other)
allow inline styles and data images.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from prefline.collect.state import state_of

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/static/apidocs"
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; "
            "frame-ancestors 'none'; base-uri 'none'")


def add_api_docs(app: FastAPI) -> None:
    """Mount the assets and the two pages; call before mounting ``/static`` itself, and
    after anything else that wraps ``app.openapi``."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS)), name="apidocs")
    build = app.openapi

    def openapi() -> dict[str, Any]:
        spec = build()
        repair_discriminators(spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        return _page(request, "swagger")

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        return _page(request, "redoc")


def _page(request: Request, viewer: str) -> HTMLResponse:
    app = request.app
    resp = state_of(request).templates.TemplateResponse(
        request, "apidocs.html", {"viewer": viewer, "title": app.title, "assets": ASSETS_URL,
                                  "spec_url": app.openapi_url})
    resp.headers["Content-Security-Policy"] = DOCS_CSP
    return resp


def repair_discriminators(spec: dict[str, Any]) -> None:
    """Fix FastAPI's spec for a body that is a discriminated union (``body: Event``).

    FastAPI writes ``oneOf: [{anyOf: [refs]}]`` with a mapping from each tag to that whole
    ``anyOf`` instead of to one ``$ref``; ReDoc then stops with "e.startsWith is not a
    function" and clients cannot tell the variants apart. The mapping is rebuilt from each
    variant's ``const`` tag, in place (idempotent).
    """
    schemas = spec.get("components", {}).get("schemas", {})
    for node in _dicts(spec):
        disc = node.get("discriminator")
        if not isinstance(disc, dict) or all(isinstance(v, str)
                                             for v in disc.get("mapping", {}).values()):
            continue
        refs = list(dict.fromkeys(r["$ref"] for r in _dicts(node.get("oneOf", []))
                                  if isinstance(r.get("$ref"), str)))
        tag = disc.get("propertyName", "")
        consts = [schemas.get(r.rsplit("/", 1)[-1], {}).get("properties", {}).get(tag, {})
                  .get("const") for r in refs]
        if refs and all(isinstance(c, str) for c in consts):
            node["oneOf"] = [{"$ref": r} for r in refs]
            disc["mapping"] = dict(zip(consts, refs, strict=True))


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict inside ``node`` (itself included), depth first."""
    if isinstance(node, dict):
        yield node
        for value in list(node.values()):
            yield from _dicts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _dicts(value)
