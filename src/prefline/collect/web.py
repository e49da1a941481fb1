"""Shared plumbing for the HTML routes: a database session per request, the logged-in
user, CSRF checks and page rendering."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from prefline.collect.auth import SESSION_COOKIE, csrf_ok, session_user
from prefline.collect.state import ApiError, LoginRequired, UiError, state_of
from prefline.store.collect_models import User, UserSession
from prefline.store.db import session_scope

LOGIN_CSRF_COOKIE = "prefline_login_csrf"


def db_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error."""
    with session_scope(state_of(request).engine) as session:
        yield session


# scope="function": commit BEFORE the response is sent, so a redirect never races its
# own write (the browser would otherwise load the next page before the commit).
Db = Annotated[Session, Depends(db_session, scope="function")]


@dataclass
class Viewer:
    user: User
    login: UserSession

    @property
    def is_admin(self) -> bool:
        return self.user.role == "admin"


def viewer(request: Request, db: Db) -> Viewer:
    found = session_user(db, request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise LoginRequired()
    return Viewer(*found)


def admin_viewer(who: Annotated[Viewer, Depends(viewer)]) -> Viewer:
    """Admins only: annotators get a 403 page, never the admin data."""
    if not who.is_admin:
        raise UiError(403, "this page is for administrators")
    return who


def admin_actor(request: Request, doing: str) -> str:
    """For JSON admin APIs: ``admin:<username>`` for a logged-in admin whose
    ``X-CSRF-Token`` header carries the session's token; else ApiError 401/403 saying that
    only administrators may do ``doing``."""
    with session_scope(state_of(request).engine) as s:
        found = session_user(s, request.cookies.get(SESSION_COOKIE))
        if found is None:
            raise ApiError(401, "log in as an administrator (session cookie) first")
        user, login = found
        if user.role != "admin":
            raise ApiError(403, f"only administrators may {doing}")
        if not csrf_ok(login.csrf_token, request.headers.get("x-csrf-token")):
            raise ApiError(403, "the X-CSRF-Token header must carry this session's token")
        return f"admin:{user.username}"


CurrentUser = Annotated[Viewer, Depends(viewer)]
Admin = Annotated[Viewer, Depends(admin_viewer)]


async def check_csrf(request: Request, who: CurrentUser) -> Viewer:
    """Every state-changing form carries the session's CSRF token (field or header)."""
    given = request.headers.get("x-csrf-token")
    if given is None:
        form = await request.form()
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else None
    if not csrf_ok(who.login.csrf_token, given):
        raise UiError(403, "the form has expired or did not come from this site; reload the page")
    return who


CsrfUser = Annotated[Viewer, Depends(check_csrf)]


def page(request: Request, template: str, status_code: int = 200,
         **context: Any) -> HTMLResponse:
    """Render a template; every page gets the viewer and its CSRF token if logged in."""
    templates = state_of(request).templates
    return templates.TemplateResponse(request, template, context, status_code=status_code)
