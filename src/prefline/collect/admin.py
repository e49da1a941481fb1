"""Admin pages (campaign progress, agreement so far, label export) and the admin users API
(``POST /api/admin/users/{user}/forget``, ``GET|POST /api/admin/users/{user}/consent``: an
admin's session cookie plus its CSRF token in ``X-CSRF-Token``, like the rollout admin API)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from prefline.audit.agreement import raw_and_alpha
from prefline.audit.stats import is_number
from prefline.audit.tables import LabelTable, label_table
from prefline.base.errors import PreflineError
from prefline.collect.campaigns import campaign_labels, progress
from prefline.collect.labels import describe, prompt_text
from prefline.collect.schemas import ErrorBody, RowId, ShortText, Strict
from prefline.collect.state import ApiError, UiError, state_of
from prefline.collect.web import Admin, Db, admin_actor, page
from prefline.store.collect_models import ApiKey, Campaign, User
from prefline.store.consent import consent_history, set_consent
from prefline.store.forget import forget_user
from prefline.store.models import PAIRWISE_CHOICES, Feedback, Prompt

router = APIRouter(prefix="/admin", include_in_schema=False)
api = APIRouter(prefix="/api/admin/users", tags=["users admin"], responses={
    code: {"model": ErrorBody, "description": text} for code, text in (
        (401, "not logged in"), (403, "not an administrator, or a wrong CSRF token"),
        (404, "the store holds nothing about this user"), (422, "a field is invalid"))})


def _value(label: dict[str, Any], criterion: str | None) -> Any:
    """What two annotators must match on to agree, per campaign kind."""
    payload = label["payload"] or {}
    if label["kind"] == "pairwise":
        return label["choice"]
    if label["kind"] == "ranking":
        return (payload.get("order") or [None])[0]  # agreement on the best response
    return (payload.get("scores") or {}).get(criterion)


def _campaign_tables(labels: list[dict[str, Any]],
                     criteria: list[str]) -> list[tuple[str, LabelTable]]:
    """Campaign labels as audit label tables (item = campaign item), one per rating
    criterion, else one named ``label``."""
    if not labels:
        return []
    kind = labels[0]["kind"]
    categories = list(PAIRWISE_CHOICES) if kind == "pairwise" else None
    users = {name: i for i, name in enumerate(sorted({x["annotator"] for x in labels}))}
    tables = []
    for criterion in criteria if kind == "rating" else [None]:
        rows = [(x["item"], users[x["annotator"]], _value(x, criterion)) for x in labels]
        rows = [r for r in rows if _usable(r[2], categories)]
        codes = [categories.index(v) if categories else v for _, _, v in rows]
        name = criterion or "label"
        tables.append((name, label_table(
            name, "interval" if kind == "rating" else "nominal",
            np.array([[i, i] for i, _, _ in rows], np.int64).reshape(-1, 2),
            np.array([a for _, a, _ in rows], np.int64), np.array(codes, np.float64),
            categories)))
    return tables


def _usable(value: Any, categories: list[str] | None) -> bool:
    """A label the table can hold: a known category, else a number (not a bool)."""
    if categories is not None:
        return value in categories
    return isinstance(value, int | float) and not isinstance(value, bool)


def raw_agreement(labels: list[dict[str, Any]],
                  criteria: list[str] | None = None) -> dict[str, Any]:
    """Raw pairwise agreement, computed by the audit's :func:`raw_and_alpha`: over items with
    >= 2 labels, the share of annotator pairs that gave the same label. Returns
    ``{"overall": share|None, "pairs": n, "per_criterion": {name: share|None}}``; overall
    pools the criteria, weighted by their annotator pairs.
    """
    per: dict[str, float | None] = {}
    agree = pairs = 0.0
    for name, table in _campaign_tables(labels, list(criteria or [])):
        row = raw_and_alpha(table)
        share = float(row["raw_agreement"]) if is_number(row["raw_agreement"]) else None
        per[name] = share
        if share is not None:
            agree, pairs = agree + share * row["pairs"], pairs + row["pairs"]
    return {"overall": agree / pairs if pairs else None, "pairs": int(pairs),
            "per_criterion": per}


@router.get("", response_class=HTMLResponse)
def overview(request: Request, db: Db, who: Admin) -> Response:
    campaigns = db.scalars(select(Campaign).order_by(Campaign.id)).all()
    rows = [{"campaign": c, "progress": progress(db, c)} for c in campaigns]
    users = db.scalars(select(User).order_by(User.username)).all()
    keys = db.scalars(select(ApiKey).order_by(ApiKey.name)).all()
    return page(request, "admin.html", who=who, rows=rows, users=users, keys=keys)


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(campaign_id: RowId, request: Request, db: Db, who: Admin) -> Response:
    campaign = _campaign(db, campaign_id)
    labels = campaign_labels(db, campaign)
    return page(request, "admin_campaign.html", who=who, campaign=campaign,
                progress=progress(db, campaign),
                agreement=raw_agreement(labels, list(campaign.criteria)),
                labels=_readable(db, labels[-50:]))


def _readable(db: Session, labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Labels for people: the prompt's text (not its JSON) and the label as the annotator
    saw it (left/right, shown order, scores)."""
    feedback = {fb.id: fb for fb in db.scalars(select(Feedback).where(
        Feedback.id.in_([x["feedback_id"] for x in labels])))}
    prompts = {p.id: p for p in db.scalars(select(Prompt).where(
        Prompt.id.in_({x["prompt_id"] for x in labels})))}
    return [{**x, "prompt_text": prompt_text(prompts.get(x["prompt_id"])),
             "label_text": describe(feedback[x["feedback_id"]])} for x in labels]


@router.get("/campaigns/{campaign_id}/export.jsonl")
def export(campaign_id: RowId, db: Db, who: Admin) -> Response:
    """Every label of the campaign as JSON lines (one label per line)."""
    campaign = _campaign(db, campaign_id)
    body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in campaign_labels(db, campaign))
    name = f"campaign-{campaign.id}.jsonl"
    return Response(body, media_type="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _campaign(db: Session, campaign_id: int) -> Campaign:
    campaign = db.get(Campaign, campaign_id)
    if campaign is None:
        raise UiError(404, "no such campaign")
    return campaign


@api.post("/{user}/forget", response_model=dict[str, Any])
async def forget(user: Annotated[ShortText, Path()], request: Request) -> JSONResponse:
    """Delete or irreversibly anonymise everything the store holds about one user (their
    feedback, prompts and responses only they used, served-response logs, consents, app
    account, snapshot items), flag the snapshots and models built from it
    ``contains_forgotten_data`` and write a content-free tombstone to the audit log. Answers
    the tombstone id, counts per table and the flagged ids (``prefline users forget``)."""
    actor = await run_in_threadpool(admin_actor, request, "forget a user")
    try:
        result = await run_in_threadpool(forget_user, state_of(request).engine, user,
                                         actor=actor)
    except PreflineError as exc:
        raise ApiError(404, str(exc), field=exc.field) from None
    return JSONResponse(result.to_json())


class ConsentIn(Strict):
    purpose: Literal["training", "evaluation", "none"] = Field(
        description="training (training and evaluation), evaluation (evaluation only) or "
        "none (revoke).")


@api.post("/{user}/consent", response_model=dict[str, Any])
async def consent(user: Annotated[ShortText, Path()], body: ConsentIn,
                  request: Request) -> JSONResponse:
    """Record the user's consent now (``prefline users consent``): the next snapshot of each
    purpose follows it; stored snapshots stay as they are. Answers the recorded entry."""
    actor = await run_in_threadpool(admin_actor, request, "record consent")
    try:
        entry = await run_in_threadpool(set_consent, state_of(request).engine, user,
                                        body.purpose, actor=actor)
    except PreflineError as exc:
        raise ApiError(422, str(exc), field=exc.field) from None
    return JSONResponse(json.loads(json.dumps(dataclasses.asdict(entry), default=str)))


@api.get("/{user}/consent", response_model=list[dict[str, Any]])
async def consent_log(user: Annotated[ShortText, Path()], request: Request) -> JSONResponse:
    """The user's consent history, oldest first (the last entry is in force)."""
    await run_in_threadpool(admin_actor, request, "read consent")
    history = await run_in_threadpool(consent_history, state_of(request).engine, user)
    return JSONResponse(json.loads(json.dumps([dataclasses.asdict(e) for e in history],
                                              default=str)))
