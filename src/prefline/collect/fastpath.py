"""``POST /api/v1/feedback`` without FastAPI's per-request machinery (issue 17).

At 1,000 single-event requests/s the ingest server's event loop was ~90 % busy, and most
of a request's CPU was FastAPI's: middleware layers, dependency solving, body handling and
the endpoint wrapper (docs/benchmarks/collect.md, "What limits it"). This pure-ASGI
middleware answers the plain case itself: a ``Content-Type: application/json`` body that
``json.loads`` parses, a valid key and an event that validates. It does what the FastAPI
route does, with the same functions: the body is parsed as Starlette parses it and
validated by the same pydantic type in the same (Python) mode, the key comes from
``api.api_key``, and ``api.store_one`` spends the rate limit, writes through the group
committer and answers.

Everything else (another content type, JSON that does not parse, an event that does not
validate, another method or path) goes on to the FastAPI app with the body replayed, so
every such answer, and the OpenAPI description of the route, is the route's own. That
hand-over happens only before anything was spent or written: the key check before it has
no side effect for a valid key (the key cache), and an invalid key is answered here with
the ``ApiError`` the route would raise (the route, too, checks the key before the body).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from prefline.collect.api import api_key, router, store_one
from prefline.collect.schemas import Event
from prefline.collect.state import ApiError, error_response

PATH = f"{router.prefix}/feedback"
_EVENT: TypeAdapter[Any] = TypeAdapter(Event)


class FeedbackFastPath:
    """Pure ASGI middleware serving ``POST {PATH}``; see the module docstring."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST"
                or not _plain_json(scope["headers"])):
            await self.app(scope, receive, send)
            return
        messages, body = await _read(receive)
        replay = _replaying(messages, receive)
        try:
            # Starlette's Request.json(): json.loads of the bytes (FastAPI's route uses it).
            data = json.loads(body) if body else None
        except Exception:  # noqa: BLE001 - the route answers it (422 JSON error, 400 else)
            data = None
        if data is None:
            await self.app(scope, replay, send)
            return
        request = Request(scope, replay)
        try:
            key = await api_key(request)
            try:
                # What FastAPI's body field does (fastapi/_compat/v2.py ModelField.validate).
                event = _EVENT.validate_python(data, from_attributes=True)
            except ValidationError:  # the route's 422 with its field path and message
                await self.app(scope, replay, send)
                return
            response = await store_one(request, event, key)
        except ApiError as exc:
            response = error_response(exc.status, exc.message, exc.field, headers=exc.headers)
        await response(scope, replay, send)


def _plain_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """Exactly ``application/json`` (what clients send); other JSON types take the route."""
    for name, value in headers:
        if name == b"content-type":
            return value.lower() == b"application/json"
    return False


async def _read(receive: Any) -> tuple[list[Any], bytes]:
    """The request's ASGI messages until its body is complete (or the client left)."""
    messages: list[Any] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, b""  # a disconnect: the route sees it as it would have
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return messages, b"".join(chunks)


def _replaying(messages: list[Any], receive: Any) -> Any:
    """A ``receive`` that gives ``messages`` again, then waits on the real one (for a
    disconnect)."""
    pending = list(messages)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


__all__ = ["PATH", "FeedbackFastPath"]
