"""The annotator pages: login, task queue, one task at a time, the user's own labels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prefline.collect.auth import (
    SESSION_COOKIE,
    SESSION_TTL,
    check_password,
    csrf_ok,
    start_session,
)
from prefline.collect.auth import end_session as end_login
from prefline.collect.campaigns import next_assignment, submit_label, user_progress
from prefline.collect.labels import parse_label
from prefline.collect.schemas import RowId
from prefline.collect.state import UiError, client_address, state_of
from prefline.collect.web import (
    LOGIN_CSRF_COOKIE,
    CsrfUser,
    CurrentUser,
    Db,
    page,
)
from prefline.store.collect_models import Assignment, Campaign, CampaignItem
from prefline.store.models import Feedback, Prompt
from prefline.store.models import Response as Resp

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    # No message from the query string: a link must not make the page say what it wants.
    return _login_page(request)


@router.post("/login")
def login(request: Request, db: Db, username: str = Form(""), password: str = Form(""),
          csrf_token: str = Form("")) -> Response:
    """Login CSRF: a single-use token that must also match the double-submit cookie (there
    is no session yet). Wrong passwords are throttled per account and per address; a
    locked-out login answers 429 with Retry-After before any password is checked.
    """
    brakes = state_of(request).brakes
    issued = brakes.login_tokens.consume(csrf_token)
    if not (issued and csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token)):
        return _login_page(request, 403, "The login form had expired; please log in again.")
    account, address = f"user:{username[:200]}", f"ip:{client_address(request)}"
    wait = max(brakes.accounts.retry_after(account), brakes.addresses.retry_after(address))
    if wait:
        return _locked(request, wait)
    user = check_password(db, username, password)
    if user is None:
        wait = max(brakes.accounts.failed(account), brakes.addresses.failed(address))
        if wait:
            return _locked(request, wait)
        return _login_page(request, 401, "Wrong username or password.")
    brakes.accounts.clear(account)
    token, _ = start_session(db, user)
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                    max_age=int(SESSION_TTL.total_seconds()),
                    secure=state_of(request).secure_cookies)
    resp.delete_cookie(LOGIN_CSRF_COOKIE)
    return resp


def _login_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    """The login form with a fresh single-use CSRF token (also in the double-submit cookie)."""
    token = state_of(request).brakes.login_tokens.issue()
    resp = page(request, "login.html", status_code=status, csrf_token=token, error=error)
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                    secure=state_of(request).secure_cookies)
    return resp


def _locked(request: Request, wait: int) -> Response:
    # The same answer for known and unknown names, so a lockout reveals no account.
    resp = _login_page(request, 429, f"Too many failed logins; try again in {wait} seconds.")
    resp.headers["Retry-After"] = str(wait)
    return resp


@router.post("/logout")
def logout(request: Request, db: Db, who: CsrfUser) -> Response:
    end_login(db, request.cookies.get(SESSION_COOKIE, ""))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


@router.get("/", response_class=HTMLResponse)
def queue(request: Request, db: Db, who: CurrentUser) -> Response:
    """The task queue: every active campaign with the user's progress in it."""
    rows = []
    for c in db.scalars(select(Campaign).where(Campaign.status == "active")
                        .order_by(Campaign.id)):
        done, total = user_progress(db, c, who.user)
        rows.append({"campaign": c, "done": done, "total": total})
    return page(request, "queue.html", who=who, rows=rows)


@router.get("/campaigns/{campaign_id}/next")
def next_task(campaign_id: RowId, request: Request, db: Db, who: CurrentUser) -> Response:
    campaign = _campaign(db, campaign_id)
    assignment = next_assignment(db, campaign, who.user)
    if assignment is None:
        done, total = user_progress(db, campaign, who.user)
        return page(request, "done.html", who=who, campaign=campaign, done=done, total=total)
    return RedirectResponse(f"/tasks/{assignment.id}", status_code=303)


@router.get("/tasks/{assignment_id}", response_class=HTMLResponse)
def task(assignment_id: RowId, request: Request, db: Db, who: CurrentUser) -> Response:
    assignment = _own_assignment(db, assignment_id, who)
    if assignment.status == "done":
        return RedirectResponse(f"/campaigns/{assignment.campaign_id}/next", status_code=303)
    campaign = _campaign(db, assignment.campaign_id)
    item = db.get(CampaignItem, assignment.item_id)
    assert item is not None
    prompt = db.get(Prompt, item.prompt_id)
    responses = {r.id: r for r in db.scalars(select(Resp).where(
        Resp.id.in_(assignment.shown_order)))}
    done, total = user_progress(db, campaign, who.user)
    return page(request, "task.html", who=who, campaign=campaign, assignment=assignment,
                messages=_chat(prompt), shown=[responses[i] for i in assignment.shown_order],
                done=done, total=total, others=_others(db, campaign, item, who))


@router.post("/tasks/{assignment_id}")
async def submit(assignment_id: RowId, request: Request, db: Db, who: CsrfUser) -> Response:
    assignment = _own_assignment(db, assignment_id, who)
    campaign = _campaign(db, assignment.campaign_id)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        label = parse_label(campaign, assignment, fields)
    except ValueError as exc:
        raise UiError(400, str(exc)) from None
    submit_label(db, assignment, who.user, label)
    return RedirectResponse(f"/campaigns/{campaign.id}/next", status_code=303)


@router.get("/labels", response_class=HTMLResponse)
def my_labels(request: Request, db: Db, who: CurrentUser) -> Response:
    """The user's own labels only; nobody else's are ever listed here."""
    labels = db.scalars(select(Feedback).where(Feedback.annotator_id == who.user.annotator_id)
                        .order_by(Feedback.id.desc()).limit(200)).all()
    return page(request, "labels.html", who=who, labels=labels)


@router.get("/labels/{feedback_id}", response_class=HTMLResponse)
def one_label(feedback_id: RowId, request: Request, db: Db, who: CurrentUser) -> Response:
    fb = db.get(Feedback, feedback_id)
    # 404 rather than 403 so annotators cannot probe which label ids exist.
    if fb is None or (fb.annotator_id != who.user.annotator_id and not who.is_admin):
        raise UiError(404, "no such label")
    return page(request, "labels.html", who=who, labels=[fb])


def _campaign(db: Session, campaign_id: int) -> Campaign:
    campaign = db.get(Campaign, campaign_id)
    if campaign is None or campaign.status != "active":
        raise UiError(404, "no such campaign")
    return campaign


def _own_assignment(db: Session, assignment_id: int, who: Any) -> Assignment:
    assignment = db.get(Assignment, assignment_id)
    if assignment is None or assignment.user_id != who.user.id:
        raise UiError(404, "no such task")
    return assignment


def _chat(prompt: Prompt | None) -> list[dict[str, str]]:
    if prompt is None:
        return []
    if prompt.messages:
        return [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))}
                for m in prompt.messages]
    return [{"role": "user", "content": prompt.text or ""}]


def _others(db: Session, campaign: Campaign, item: CampaignItem, who: Any) -> int | None:
    """How many others labelled this item, shown only in non-blind campaigns."""
    if campaign.blind:
        return None
    return int(db.scalar(select(func.count()).select_from(Assignment).where(
        Assignment.item_id == item.id, Assignment.status == "done",
        Assignment.user_id != who.user.id)) or 0)
