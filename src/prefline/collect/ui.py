"""The annotator pages: login, task queue, one task at a time, the user's own labels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prefline.base.errors import PreflineError
from prefline.collect.auth import (
    SESSION_COOKIE,
    SESSION_TTL,
    check_password,
    csrf_ok,
    start_session,
)
from prefline.collect.auth import end_session as end_login
from prefline.collect.campaigns import (
    SKIP_REASONS,
    anchors,
    next_assignment,
    reopen,
    skip,
    submit_label,
    user_progress,
)
from prefline.collect.labels import describe, form_values, parse_label
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
        # "Continue" once the user has anything in it: a label, a skip or an open task
        started = db.scalar(select(Assignment.id).where(
            Assignment.campaign_id == c.id, Assignment.user_id == who.user.id).limit(1))
        rows.append({"campaign": c, "done": done, "total": total, "started": started})
    return page(request, "queue.html", who=who, rows=rows)


@router.get("/campaigns/{campaign_id}/next")
def next_task(campaign_id: RowId, request: Request, db: Db, who: CurrentUser) -> Response:
    campaign = _campaign(db, campaign_id)
    assignment = next_assignment(db, campaign, who.user)
    if assignment is None:
        done, total = user_progress(db, campaign, who.user)
        return page(request, "done.html", who=who, campaign=campaign, done=done, total=total,
                    last=_last_label(db, campaign, who))
    return RedirectResponse(f"/tasks/{assignment.id}", status_code=303)


@router.get("/tasks/{assignment_id}", response_class=HTMLResponse)
def task(assignment_id: RowId, request: Request, db: Db, who: CurrentUser) -> Response:
    assignment = _own_assignment(db, assignment_id, who)
    if assignment.status != "assigned":
        return RedirectResponse(f"/campaigns/{assignment.campaign_id}/next", status_code=303)
    campaign = _campaign(db, assignment.campaign_id)
    item = db.get(CampaignItem, assignment.item_id)
    assert item is not None
    prompt = db.get(Prompt, item.prompt_id)
    responses = {r.id: r for r in db.scalars(select(Resp).where(
        Resp.id.in_(assignment.shown_order)))}
    done, total = user_progress(db, campaign, who.user)
    editing = db.get(Feedback, assignment.feedback_id) if assignment.feedback_id else None
    values = form_values(editing, [int(i) for i in assignment.shown_order],
                         [str(c) for c in campaign.criteria]) if editing else {}
    return page(request, "task.html", who=who, campaign=campaign, assignment=assignment,
                messages=_chat(prompt), shown=[responses[i] for i in assignment.shown_order],
                done=done, total=total, others=_others(db, campaign, item, who),
                editing=editing, values=values, anchors=anchors(campaign),
                last=None if editing else _last_label(db, campaign, who),
                skip_reasons=SKIP_REASONS)


@router.post("/tasks/{assignment_id}")
async def submit(assignment_id: RowId, request: Request, db: Db, who: CsrfUser) -> Response:
    assignment = _own_assignment(db, assignment_id, who)
    campaign = _campaign(db, assignment.campaign_id)
    if assignment.status == "skipped":  # a stale tab: the item was given back
        return RedirectResponse(f"/campaigns/{campaign.id}/next", status_code=303)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        label = parse_label(campaign, assignment, fields)
    except ValueError as exc:
        raise UiError(400, str(exc)) from None
    submit_label(db, assignment, who.user, label)
    return RedirectResponse(f"/campaigns/{campaign.id}/next", status_code=303)


@router.post("/tasks/{assignment_id}/skip")
def skip_task(assignment_id: RowId, db: Db, who: CsrfUser, reason: str = Form(""),
              note: str = Form("")) -> Response:
    """Give the item back unlabelled with a reason; it is not shown to this user again."""
    assignment = _own_assignment(db, assignment_id, who)
    try:
        skip(db, assignment, reason, note)
    except PreflineError as exc:
        raise UiError(400, str(exc)) from None
    return RedirectResponse(f"/campaigns/{assignment.campaign_id}/next", status_code=303)


@router.post("/labels/{feedback_id}/edit")
def edit_label(feedback_id: RowId, db: Db, who: CsrfUser) -> Response:
    """Undo/edit one's own current label: its task opens again, prefilled; submitting it
    stores a new label that supersedes this one (both are kept)."""
    assignment = db.scalar(select(Assignment).where(Assignment.feedback_id == feedback_id,
                                                    Assignment.user_id == who.user.id))
    if assignment is None:  # not yours, not from a campaign, or already replaced
        raise UiError(404, "no such label to change")
    _campaign(db, assignment.campaign_id)
    reopen(db, assignment, actor=f"user:{who.user.username}")
    return RedirectResponse(f"/tasks/{assignment.id}", status_code=303)


@router.get("/labels", response_class=HTMLResponse)
def my_labels(request: Request, db: Db, who: CurrentUser) -> Response:
    """The user's own labels only; nobody else's are ever listed here."""
    labels = db.scalars(select(Feedback).where(Feedback.annotator_id == who.user.annotator_id)
                        .order_by(Feedback.id.desc()).limit(200)).all()
    return page(request, "labels.html", who=who, rows=_label_rows(db, list(labels), who))


@router.get("/labels/{feedback_id}", response_class=HTMLResponse)
def one_label(feedback_id: RowId, request: Request, db: Db, who: CurrentUser) -> Response:
    fb = db.get(Feedback, feedback_id)
    # 404 rather than 403 so annotators cannot probe which label ids exist.
    if fb is None or (fb.annotator_id != who.user.annotator_id and not who.is_admin):
        raise UiError(404, "no such label")
    return page(request, "labels.html", who=who, rows=_label_rows(db, [fb], who))


def _label_rows(db: Session, labels: list[Feedback], who: Any) -> list[dict[str, Any]]:
    """Each label as its annotator saw it, with what replaced it and whether it can be
    changed (the current label of one of the viewer's own campaign tasks)."""
    ids = [fb.id for fb in labels]
    replaced = dict(db.execute(select(Feedback.supersedes_id, Feedback.id).where(
        Feedback.supersedes_id.in_(ids))).tuples().all())
    editable = set(db.scalars(select(Assignment.feedback_id).join(
        Campaign, Campaign.id == Assignment.campaign_id).where(
        Assignment.feedback_id.in_(ids), Assignment.user_id == who.user.id,
        Assignment.status == "done", Campaign.status == "active")))
    return [{"fb": fb, "text": describe(fb), "replaced_by": replaced.get(fb.id),
             "editable": fb.id in editable} for fb in labels]


def _last_label(db: Session, campaign: Campaign, who: Any) -> int | None:
    """The feedback id of the user's latest label in this campaign (for "Undo last")."""
    return db.scalar(select(Assignment.feedback_id).where(
        Assignment.campaign_id == campaign.id, Assignment.user_id == who.user.id,
        Assignment.status == "done").order_by(Assignment.completed_at.desc(),
                                              Assignment.id.desc()).limit(1))


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
