"""The ingest API: production systems log interactions and attach feedback.

Every route needs an API key (``Authorization: Bearer pk_...`` or ``X-API-Key``), is rate
limited per key (one token per event) and answers 4xx with ``{message, field, detail}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from prefline.collect.auth import KeyInfo
from prefline.collect.ingest import IngestError, log_interaction
from prefline.collect.pii import clean_events, clean_log
from prefline.collect.schemas import (
    BatchRequest,
    BatchResult,
    ErrorBody,
    Event,
    EventResult,
    LogRequest,
    LogResult,
)
from prefline.collect.state import ApiError, check_key_guessing, state_of

SECURITY_SCHEMES = {
    "BearerKey": {"type": "http", "scheme": "bearer",
                  "description": "An ingest key from `prefline keys create`."},
    "HeaderKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [(401, "missing or invalid API key"),
                       (409, "an idempotency key was used before with a different body"),
                       (422, "a field is invalid"),
                       (429, "rate limit exceeded; see Retry-After")]
}
router = APIRouter(prefix="/api/v1", tags=["ingest"], responses=ERRORS)


async def api_key(request: Request) -> KeyInfo:
    """The caller's key; 401 unless it exists and is not revoked.

    Headers are read directly rather than through FastAPI's security classes: on the hot
    path their extra dependency resolution cost more than the database write.
    ``document_security`` puts the schemes into the OpenAPI spec instead.
    """
    auth = request.headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    given = credentials.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key")
    state = state_of(request)
    info = state.keys.cached(given)
    if not isinstance(info, KeyInfo):  # key guessing is throttled per address
        check_key_guessing(state.brakes.api_keys, request)
    if info is False:  # not cached: the database lookup runs off the event loop
        info = await state.keys.shared_lookup(given)
    if not isinstance(info, KeyInfo):
        check_key_guessing(state.brakes.api_keys, request, failed=True)
        raise ApiError(401, "a valid API key is required (Authorization: Bearer pk_...)",
                       headers={"WWW-Authenticate": "Bearer"})
    return info


Key = Annotated[KeyInfo, Depends(api_key)]


def _spend(request: Request, key: KeyInfo, cost: int) -> None:
    wait = state_of(request).limiter.take(key, cost)
    if wait < 0:
        raise ApiError(429, f"a batch of {cost} events exceeds this key's burst of {key.burst}",
                       field="events")
    if wait > 0:
        raise ApiError(429, f"rate limit of {key.rate_per_s:g} events/s exceeded",
                       headers={"Retry-After": str(max(1, round(wait + 0.5)))})


async def _cleaned(request: Request, events: list[Any], key: KeyInfo,
                   prefix: str = "") -> list[Any]:
    """``events`` with their rationales under the key's redaction policy (scanned off the
    event loop: a few milliseconds per text)."""
    redactor = state_of(request).redactor
    if redactor is None or not any(ev.rationale for ev in events):
        return events
    return await run_in_threadpool(clean_events, redactor, events, key.name, prefix)


@router.post("/log", response_model=LogResult, status_code=201,
             summary="Log a prompt and the responses a model gave to it")
def log(body: LogRequest, request: Request, key: Key) -> LogResult:
    """Prompts and responses are deduplicated by content, so logging twice is harmless."""
    _spend(request, key, 1)
    state = state_of(request)
    body = clean_log(state.redactor, body, key.name)
    prompt_id, response_ids = log_interaction(state.engine, body)
    return LogResult(prompt_id=prompt_id, response_ids=response_ids)


@router.post("/feedback", response_model=EventResult, status_code=201,
             summary="Attach one feedback event to logged responses",
             responses={200: {"model": EventResult,
                              "description": "already stored under this idempotency key"}})
async def feedback(body: Event, request: Request, key: Key) -> JSONResponse:
    """Answers 200 with the existing id when this API key sent the same event under the same
    idempotency key before, and 409 when that key came with a different body."""
    return await store_one(request, body, key)


async def store_one(request: Request, body: Any, key: KeyInfo) -> JSONResponse:
    """``POST /feedback`` after validation, for the route above and for
    ``collect.fastpath``, which serves the plain case without FastAPI's machinery."""
    _spend(request, key, 1)
    events = await _cleaned(request, [body], key)
    try:
        fid, status = (await state_of(request).committer.write(events, key.name,
                                                               key_id=key.id))[0]
    except IngestError as exc:
        raise ApiError(exc.status, str(exc), field=exc.field) from None
    # A plain JSONResponse: FastAPI would otherwise validate the result model once more.
    return JSONResponse({"id": fid, "status": status},
                        status_code=200 if status == "duplicate" else 201)


@router.post("/feedback/batch", response_model=BatchResult,
             summary="Attach up to 1000 feedback events in one transaction")
async def feedback_batch(body: BatchRequest, request: Request, key: Key) -> JSONResponse:
    """All or nothing: one bad event rejects the batch with its path (``events[3].choice``)."""
    _spend(request, key, len(body.events))
    events = await _cleaned(request, body.events, key, "events")
    try:
        results = await state_of(request).committer.write(events, key.name,
                                                          field_prefix="events", key_id=key.id)
    except IngestError as exc:
        raise ApiError(exc.status, str(exc), field=exc.field) from None
    created = sum(1 for _, s in results if s == "created")
    return JSONResponse({"results": [{"id": i, "status": s} for i, s in results],
                         "created": created, "duplicates": len(results) - created})


@router.get("/whoami", summary="Check a key", response_model=dict[str, str])
async def whoami(key: Key) -> dict[str, str]:
    return {"key": key.name}


def document_security(app: FastAPI) -> None:
    """Declare the two key schemes in the OpenAPI spec for every ingest route."""
    build = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            spec = build()
            spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for path, ops in spec.get("paths", {}).items():
                if path.startswith(router.prefix):
                    for op in ops.values():
                        op["security"] = [{"BearerKey": []}, {"HeaderKey": []}]
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
