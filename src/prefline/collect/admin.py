"""Admin pages: campaign progress, agreement so far, and label export."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from prefline.collect.campaigns import campaign_labels, progress
from prefline.collect.state import UiError
from prefline.collect.web import Admin, Db, page
from prefline.store.collect_models import ApiKey, Campaign, User

router = APIRouter(prefix="/admin", include_in_schema=False)


def _label_key(label: dict[str, Any], criterion: str | None) -> Any:
    """What two annotators must match on to agree, per campaign kind."""
    payload = label["payload"] or {}
    if label["kind"] == "pairwise":
        return label["choice"]
    if label["kind"] == "ranking":
        return tuple(payload.get("order") or ())[:1]  # agreement on the best response
    return (payload.get("scores") or {}).get(criterion)


def raw_agreement(labels: list[dict[str, Any]],
                  criteria: list[str] | None = None) -> dict[str, Any]:
    """Raw pairwise agreement: over items with >= 2 labels, the share of annotator pairs
    that gave the same label (ratings: the same score per criterion; rankings: the same
    best response). Returns ``{"overall": share|None, "pairs": n, "per_criterion": {...}}``.
    """
    by_item: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for label in labels:
        by_item[label["item"]].append(label)
    keys: list[str | None] = list(criteria or []) if labels and labels[0]["kind"] == "rating" \
        else [None]
    per: dict[str, float | None] = {}
    agree_all = pairs_all = 0
    for criterion in keys:
        agree = pairs = 0
        for group in by_item.values():
            for x, y in itertools.combinations(group, 2):
                pairs += 1
                agree += _label_key(x, criterion) == _label_key(y, criterion)
        per[criterion or "label"] = agree / pairs if pairs else None
        agree_all, pairs_all = agree_all + agree, pairs_all + pairs
    return {"overall": agree_all / pairs_all if pairs_all else None, "pairs": pairs_all,
            "per_criterion": per}


@router.get("", response_class=HTMLResponse)
def overview(request: Request, db: Db, who: Admin) -> Response:
    campaigns = db.scalars(select(Campaign).order_by(Campaign.id)).all()
    rows = [{"campaign": c, "progress": progress(db, c)} for c in campaigns]
    users = db.scalars(select(User).order_by(User.username)).all()
    keys = db.scalars(select(ApiKey).order_by(ApiKey.name)).all()
    return page(request, "admin.html", who=who, rows=rows, users=users, keys=keys)


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(campaign_id: int, request: Request, db: Db, who: Admin) -> Response:
    campaign = _campaign(db, campaign_id)
    labels = campaign_labels(db, campaign)
    return page(request, "admin_campaign.html", who=who, campaign=campaign,
                progress=progress(db, campaign),
                agreement=raw_agreement(labels, list(campaign.criteria)),
                labels=labels[-50:])


@router.get("/campaigns/{campaign_id}/export.jsonl")
def export(campaign_id: int, db: Db, who: Admin) -> Response:
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
