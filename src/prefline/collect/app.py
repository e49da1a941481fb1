"""The FastAPI app: annotation UI, admin pages and the ingest API on one store."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import prefline.store.collect_models  # noqa: F401  (registers the collection tables)
from prefline.collect import admin, api, rollout_routes, ui
from prefline.collect.apidocs import add_api_docs
from prefline.collect.fastpath import FeedbackFastPath
from prefline.collect.state import (
    HERE,
    ApiError,
    LoginRequired,
    UiError,
    error_response,
    field_path,
    make_state,
    state_of,
)
from prefline.store.db import open_store


def create_app(db_url: str | None = None, *, secure_cookies: bool = False) -> FastAPI:
    """Build the app on the store at ``db_url`` (migrated on first use).

    ``secure_cookies`` marks cookies HTTPS-only; turn it on behind TLS.
    """
    engine = open_store(db_url)
    app = FastAPI(title="prefline collect",
                  description="Annotation UI and production-feedback ingest API.",
                  version="1", docs_url=None, redoc_url=None, lifespan=frozen_startup_heap)
    app.state.collect = make_state(engine, secure_cookies=secure_cookies)
    app.include_router(api.router)
    app.include_router(ui.router)
    app.include_router(admin.router)
    app.include_router(admin.api)  # /api/admin/users: forget a user
    rollout_routes.install(app)  # /v1 chat API, rollout admin API and dashboard
    _handlers(app)
    api.document_security(app)
    add_api_docs(app)  # before /static: its assets live under /static/apidocs
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(SecurityHeaders)
    app.add_middleware(FeedbackFastPath)  # outermost of ours: POST /api/v1/feedback only
    return app


@asynccontextmanager
async def frozen_startup_heap(_: FastAPI) -> AsyncIterator[None]:
    """While the app serves, the objects alive at start-up are out of the cyclic GC's sight.

    A served app holds a few hundred thousand long-lived objects (FastAPI, pydantic,
    SQLAlchemy, templates). Every full collection walked all of them on the event-loop
    thread, stalling every request in flight: that stall was the open-loop p99 at 1,000
    requests/s (docs/benchmarks/collect.md: 79-145 ms with collection as it was, 9 ms with
    collection off). ``gc.freeze`` moves them to the permanent generation, so a collection
    walks only what requests create; ``gc.unfreeze`` at shutdown gives them back (an
    in-process server, as in tests, leaves the interpreter as it found it). Reference
    counting still frees everything as before; only cycle detection skips the frozen set."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class SecurityHeaders:
    """Pure ASGI middleware (Starlette's BaseHTTPMiddleware costs a task per request).

    No inline scripts anywhere, so a strict CSP is a second wall behind escaping. Pages are
    never stored by the browser or a proxy (``no-store``): they carry labels, CSRF tokens
    and admin data, and the back button after logout must not show them. Static assets
    (``/static/``) are public and may be cached.
    """

    HEADERS = [
        (b"content-security-policy",
         b"default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
         b"frame-ancestors 'none'; base-uri 'none'"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    ]
    NO_STORE = (b"cache-control", b"no-store")

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        extra = list(self.HEADERS)
        if not scope["path"].startswith("/static/"):
            extra.append(self.NO_STORE)

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                named = {name.lower() for name, _ in headers}
                message["headers"] = headers + [h for h in extra if h[0] not in named]
            await send(message)

        await self.app(scope, receive, with_headers)


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.field, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        first = errors[0] if errors else {}
        field = field_path(first.get("loc", ()))
        message = f"{field or 'body'}: {first.get('msg', 'invalid request')}"
        detail = [{"field": field_path(e.get("loc", ())), "message": e.get("msg"),
                   "type": e.get("type")} for e in errors]
        if not request.url.path.startswith("/api/"):
            return _ui_error(request, 400, message)
        return error_response(422, message, field or None, detail)

    @app.exception_handler(UiError)
    async def ui_error(request: Request, exc: UiError) -> Response:
        return _ui_error(request, exc.status, exc.message)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _: LoginRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/") or request.url.path.startswith("/static/"):
            return error_response(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
        return _ui_error(request, exc.status_code, str(exc.detail))


def _ui_error(request: Request, status: int, message: str) -> Response:
    templates = state_of(request).templates
    return templates.TemplateResponse(request, "error.html",
                                      {"status": status, "message": message},
                                      status_code=status)
