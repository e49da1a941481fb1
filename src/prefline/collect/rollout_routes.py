"""HTTP for rollout: the OpenAI-compatible chat API, the admin rollout API and dashboard.

- ``/v1/chat/completions`` (a sub-application, so that its errors are OpenAI-shaped
  ``{"error": {...}}`` JSON and it has its own OpenAPI document at ``/v1/openapi.json``):
  the ingest API's keys and per-key rate limits (``collect.api.api_key``), one token per
  request; ``stream: true`` answers with server-sent events.
- ``/api/admin/rollout/...``: promote, roll back, change a flag — an admin's session
  cookie plus its CSRF token in ``X-CSRF-Token``; API keys and annotators are refused.
- ``/admin/rollout``: the dashboard (arms, shares, metrics with always-valid intervals,
  thumbs-up over the canary as a plot, the audit trail) with a CSRF-protected rollback form.

The logic lives in :mod:`prefline.rollout`; this module only speaks HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Form, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from prefline.base.errors import PreflineError
from prefline.collect.api import SECURITY_SCHEMES, Key, _spend
from prefline.collect.schemas import ErrorBody, ShortText, Str
from prefline.collect.state import ApiError, CollectState, UiError, field_path, state_of
from prefline.collect.web import Admin, CsrfUser, Db, admin_actor, page
from prefline.rollout import actions
from prefline.rollout.serving import ChatRequest, PolicyServer, Served
from prefline.rollout.telemetry import arm_metrics
from prefline.store.models import AuditLog

_LOCK = threading.Lock()


def policy_server(state: CollectState) -> PolicyServer:
    """The app's policy server, made on first use (upstreams from ``prefline serve``)."""
    with _LOCK:
        server = state.extra.get("policy_server")
        if server is None:
            server = PolicyServer(state.engine, state.extra.get("upstreams"))
            state.extra["policy_server"] = server
        return server  # type: ignore[no-any-return]


# ---------------------------------------------------------------- OpenAI-compatible chat


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: Annotated[Str, Field(max_length=100_000)]


class ChatCompletionRequest(BaseModel):
    """The OpenAI request; unknown OpenAI fields (``top_p``, ``n``...) are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: ShortText = Field(description="The served model name (a rollout flag).")
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=200)]
    max_tokens: Annotated[int, Field(ge=1, le=4096)] = 64
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.7
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    stream: bool = False
    user: ShortText | None = Field(None, description="End-user id: the canary split is "
                                   "sticky per user; the log keeps only its sha256.")
    segment: ShortText | None = Field(None, description="prefline: the user's segment, for "
                                      "allow/deny lists of the canary and, as a value or "
                                      "key=value pairs, a personal policy's routing.")
    segment_attrs: Annotated[dict[ShortText, ShortText], Field(max_length=20)] | None = Field(
        None, description='prefline: declared segment attributes of the user, e.g. {"style": '
        '"concise"}; logged with the served response.')


class ChatMessageOut(BaseModel):
    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    response_id: int = Field(description="prefline: the id the feedback API takes.")
    arm: str = Field(description="prefline: production or candidate.")
    adapter: str | None = Field(None, description="prefline: the adapter of a personal policy "
                                "that served (global, or key=value of the request's segment); "
                                "null for a plain policy.")


class OpenAIError(BaseModel):
    error: dict[str, Any]


def _oa_error(status: int, message: str, param: str | None = None,
              headers: dict[str, str] | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": status}}, status_code=status, headers=headers)


def chat_app(state: CollectState) -> FastAPI:
    sub = FastAPI(title="prefline policy serving", version="1",
                  description="OpenAI-compatible chat completions of registered policies.")
    sub.state.collect = state
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": OpenAIError, "description": text} for code, text in (
            (401, "missing or invalid API key"), (404, "no such served model"),
            (422, "a field is invalid"), (429, "rate limit exceeded"),
            (502, "the model failed"), (503, "nothing is serving this model"))}

    @sub.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return _oa_error(exc.status, exc.message, exc.field, exc.headers)

    @sub.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        first: dict[str, Any] = next(iter(exc.errors()), {})
        field = field_path(first.get("loc", ()))
        return _oa_error(422, f"{field or 'body'}: {first.get('msg', 'invalid request')}", field)

    @sub.post("/chat/completions", response_model=ChatCompletion, responses={
        **errors, 200: {"content": {"text/event-stream": {}},
                        "description": "the completion (JSON, or SSE chunks with stream)"}})
    async def chat_completions(body: ChatCompletionRequest, request: Request,
                               key: Key) -> Response:
        """Serve the arm the user's canary bucket picks; the response is logged (and
        committed) before it is sent."""
        _spend(request, key, 1)
        req = ChatRequest(flag=body.model, messages=[m.model_dump() for m in body.messages],
                          user=body.user or f"key:{key.name}", segment=body.segment,
                          segment_attrs=body.segment_attrs,
                          max_tokens=body.max_tokens, temperature=body.temperature,
                          seed=body.seed or 0)
        server = policy_server(state)
        try:
            if body.stream:
                opened = await run_in_threadpool(server.stream, req)
                return StreamingResponse(_sse(*opened), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-store"})
            served = await run_in_threadpool(server.chat, req)
        except PreflineError as exc:
            status = 404 if "no served model" in str(exc) else 503
            raise ApiError(status, str(exc), field="model") from None
        if served.error is not None:
            raise ApiError(502, f"model {served.model_version} failed ({served.request_id}): "
                           f"{served.error}")
        return JSONResponse(_completion(served))

    build = sub.openapi

    def openapi() -> dict[str, Any]:
        if sub.openapi_schema is None:
            spec = build()
            spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for ops in spec.get("paths", {}).values():
                for op in ops.values():
                    op["security"] = [{"BearerKey": []}, {"HeaderKey": []}]
            sub.openapi_schema = spec
        return sub.openapi_schema

    sub.openapi = openapi  # type: ignore[method-assign]
    return sub


def _completion(s: Served) -> dict[str, Any]:
    return {"id": f"chatcmpl-{s.request_id}", "object": "chat.completion",
            "created": int(time.time()), "model": s.model_version,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": s.text},
                         "finish_reason": "stop"}],
            "response_id": s.response_id, "arm": s.arm, "adapter": s.adapter}


def _sse(request_id: str, arm: str, version: str,
         pieces: Iterator[str | Served]) -> Iterator[str]:
    """OpenAI chunks as the reply is generated: the role, each piece, then a last chunk
    with ``finish_reason`` and the ``response_id`` feedback needs — sent only after the
    response is committed to the log (``finish_reason: "error"`` and the message when the
    model failed mid-way; the failure is logged too)."""
    base = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": version, "arm": arm}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = base | extra | {"choices": [{"index": 0, "delta": delta,
                                            "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for piece in pieces:
        if isinstance(piece, str):
            yield chunk({"content": piece})
        elif piece.error is None:
            yield chunk({}, "stop", response_id=piece.response_id, adapter=piece.adapter)
        else:
            yield chunk({}, "error", error={"message": piece.error, "type": "server_error"})
    yield "data: [DONE]\n\n"


# ---------------------------------------------------------------- admin API and dashboard

ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (401, "not logged in"), (403, "not an administrator, or a wrong CSRF token"),
        (409, "the change is not allowed (the message says why)"), (422, "a field is invalid"))}
admin_api = APIRouter(prefix="/api/admin/rollout", tags=["rollout admin"],
                      responses=ADMIN_ERRORS)
dashboard = APIRouter(prefix="/admin/rollout", include_in_schema=False)


class Change(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[Str, Field(min_length=1, max_length=2000)]
    to: Literal["staging", "canary", "production"] | None = None
    flag: ShortText | None = None
    percent: Annotated[float, Field(ge=0, le=100)] | None = None


class FlagChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[Str, Field(min_length=1, max_length=2000)]
    percent: Annotated[float, Field(ge=0, le=100)] | None = None
    allow: Annotated[list[ShortText], Field(max_length=100)] | None = None
    deny: Annotated[list[ShortText], Field(max_length=100)] | None = None


def _admin_actor(request: Request) -> str:
    """``admin:<username>`` for a logged-in admin whose CSRF header matches, else 401/403."""
    return admin_actor(request, "change a rollout")


async def _act(request: Request, fn: Any, *args: Any, **kwargs: Any) -> JSONResponse:
    actor = await run_in_threadpool(_admin_actor, request)
    try:
        out = await run_in_threadpool(fn, state_of(request).engine, *args, actor=actor, **kwargs)
    except PreflineError as exc:
        raise ApiError(409, str(exc), field=exc.field) from None
    policy_server(state_of(request)).flags.refresh()
    return JSONResponse(json.loads(json.dumps(out, default=str)))


@admin_api.post("/artifacts/{artifact_id}/promote", response_model=dict[str, Any])
async def promote(artifact_id: Annotated[int, Path(ge=1, le=2**62)], body: Change,
                  request: Request) -> JSONResponse:
    """One lifecycle step on (or ``to``); 409 with the reason when not allowed."""
    return await _act(request, actions.promote, artifact_id, reason=body.reason, to=body.to,
                      flag=body.flag, percent=body.percent)


@admin_api.post("/artifacts/{artifact_id}/rollback", response_model=dict[str, Any])
async def rollback(artifact_id: Annotated[int, Path(ge=1, le=2**62)], body: Change,
                   request: Request) -> JSONResponse:
    return await _act(request, actions.rollback, artifact_id, reason=body.reason)


@admin_api.post("/flags/{name}", response_model=dict[str, Any])
async def change_flag(name: Annotated[Str, Path(min_length=1, max_length=100)],
                      body: FlagChange, request: Request) -> JSONResponse:
    """Canary share and segments; servers pick the change up without a restart."""
    return await _act(request, actions.set_traffic, name, reason=body.reason,
                      percent=body.percent, allow=body.allow, deny=body.deny)


@dashboard.get("", response_class=HTMLResponse)
def rollout_page(request: Request, db: Db, who: Admin) -> Response:
    engine = state_of(request).engine
    flags = actions.status(engine)
    for f in flags:
        f["telemetry"] = arm_metrics(engine, f["flag"])
    trail = db.scalars(select(AuditLog).where(
        AuditLog.action.like("lifecycle.%") | AuditLog.action.like("flag.%")
        | AuditLog.action.like("gate.%")).order_by(AuditLog.id.desc()).limit(50)).all()
    return page(request, "rollout.html", who=who, flags=flags, trail=trail)


@dashboard.post("/rollback/{artifact_id}")
def rollback_form(artifact_id: int, request: Request, who: CsrfUser,
                  reason: str = Form("")) -> Response:
    """The dashboard's rollback button (admins only; CSRF-checked by ``CsrfUser``)."""
    if not who.is_admin:
        raise UiError(403, "only administrators may roll back")
    state = state_of(request)
    try:
        actions.rollback(state.engine, artifact_id, actor=f"admin:{who.user.username}",
                         reason=reason.strip() or "rolled back from the dashboard")
    except PreflineError as exc:
        raise UiError(409, str(exc)) from None
    policy_server(state).flags.refresh()
    return RedirectResponse("/admin/rollout", status_code=303)


def install(app: FastAPI) -> None:
    """Mount the chat API at /v1 and add the admin API and dashboard routes."""
    app.mount("/v1", chat_app(app.state.collect))
    app.include_router(admin_api)
    app.include_router(dashboard)
