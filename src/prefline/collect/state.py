"""What one running app holds (engine, caches, templates) and the errors routes raise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine

from prefline.collect.auth import KeyCache, RateLimiter
from prefline.collect.committer import GroupCommitter
from prefline.collect.ingest import FeedbackWriter
from prefline.collect.render import render_markdown
from prefline.collect.throttle import SingleUseTokens, Throttle
from prefline.pii.redactor import Redactor
from prefline.store.models import FEEDBACK_KINDS

HERE = Path(__file__).parent


@dataclass
class Brakes:
    """Failure throttles of the running app (per process; see ``collect.throttle``).

    Password guessing: 5 wrong passwords for one account, or 20 from one address, within
    15 minutes lock it for a minute, doubling per lockout up to an hour. Key guessing: 20
    invalid API keys from one address within a minute lock it out for 30 s, doubling.
    """

    accounts: Throttle = field(default_factory=lambda: Throttle(5, 900.0, 60.0))
    addresses: Throttle = field(default_factory=lambda: Throttle(20, 900.0, 60.0))
    api_keys: Throttle = field(default_factory=lambda: Throttle(20, 60.0, 30.0, 900.0))
    login_tokens: SingleUseTokens = field(default_factory=SingleUseTokens)


@dataclass
class CollectState:
    engine: Engine
    keys: KeyCache
    limiter: RateLimiter
    writer: FeedbackWriter
    committer: GroupCommitter
    templates: Jinja2Templates
    secure_cookies: bool = False
    brakes: Brakes = field(default_factory=Brakes)
    extra: dict[str, Any] = field(default_factory=dict)
    redactor: Redactor | None = None
    """Personal data in ingested prompts, responses and rationales (None: all kept as sent)."""


def make_state(engine: Engine, secure_cookies: bool = False) -> CollectState:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["markdown"] = render_markdown
    # Campaign instructions are written by admins: their http(s) links are clickable.
    templates.env.filters["instructions"] = lambda text: render_markdown(text, links=True)
    writer = FeedbackWriter(engine)
    return CollectState(engine=engine, keys=KeyCache(engine), limiter=RateLimiter(),
                        writer=writer, committer=GroupCommitter(writer), templates=templates,
                        secure_cookies=secure_cookies)


def state_of(request: Request) -> CollectState:
    return request.app.state.collect  # type: ignore[no-any-return]


class ApiError(Exception):
    """A JSON error: ``{"message", "field", "detail"}`` with this status."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def error_response(status: int, message: str, field: str | None = None, detail: object = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON body of every API error (``ErrorBody`` in the OpenAPI spec)."""
    return JSONResponse({"message": message, "field": field, "detail": detail},
                        status_code=status, headers=headers)


class UiError(Exception):
    """An HTML error page (403, 404, 400) for the annotation UI."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def client_address(request: Request) -> str:
    """The peer's address (behind a proxy, run uvicorn with --proxy-headers)."""
    return request.client.host if request.client else "unknown"


def check_key_guessing(throttle: Throttle, request: Request, failed: bool = False) -> None:
    """429 with Retry-After while the caller's address is locked out for invalid API keys;
    ``failed`` records one more invalid key first."""
    address = client_address(request)
    wait = throttle.failed(address) if failed else throttle.retry_after(address)
    if wait:
        raise ApiError(429, f"too many invalid API keys from this address; retry in {wait} s",
                       headers={"Retry-After": str(wait)})


class LoginRequired(Exception):
    """Raised by UI routes without a session: the app redirects to the login page."""


def field_path(loc: Sequence[int | str]) -> str:
    """Pydantic's error location as a readable path: ``events[3].choice``.

    Drops the ``body`` root, the union tag pydantic inserts (``pairwise``) and validator
    labels, none of which the caller wrote.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "body" and not out or part in FEEDBACK_KINDS or "[" in part or "(" in part:
            continue
        else:
            out += f".{part}" if out else part
    return out
