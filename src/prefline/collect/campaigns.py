"""Campaigns: choosing items, handing them out until each has N labels, storing labels.

Assignment rule: a user gets the lowest-positioned item they have not been given yet whose
labels plus open (unexpired) assignments are below the campaign's overlap N. On PostgreSQL
the campaign row is locked while choosing, so two annotators cannot both take the last
slot; SQLite serialises writers anyway.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prefline.base.errors import PreflineError
from prefline.store.collect_models import (
    CAMPAIGN_KINDS,
    Assignment,
    Campaign,
    CampaignItem,
    User,
)
from prefline.store.db import audit
from prefline.store.models import Feedback, Prompt, Response, utcnow

ASSIGNMENT_TTL = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class Selection:
    """Which prompts/responses a campaign covers (all filters combine with AND)."""

    tags: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    prompt_ids: tuple[int, ...] = ()
    limit: int | None = None
    k: int = 2
    seed: int = 0


def create_campaign(session: Session, name: str, kind: str, criteria: Sequence[str],
                    overlap: int = 1, blind: bool = True, selection: Selection | None = None,
                    instructions: str | None = None, actor: str = "cli",
                    rubric: Mapping[str, Mapping[Any, str]] | None = None) -> Campaign:
    """Create a campaign and its items; raises PreflineError if nothing matches.

    ``rubric`` gives rating campaigns their anchors: criterion → {score 1-5: what that
    score means}, shown beside the scale (kept in the campaign's settings JSON).
    """
    sel = selection or Selection()
    _check_campaign(session, name, kind, criteria, overlap, sel)
    anchors = _check_rubric(rubric or {}, criteria)
    groups = _responses_by_prompt(session, sel)
    rng = random.Random(sel.seed)
    items: list[tuple[int, list[int]]] = []
    for prompt_id, rids in groups:
        if kind == "rating":
            items.extend((prompt_id, [r]) for r in rids)
        elif len(rids) >= (2 if kind == "pairwise" else sel.k):
            chosen = rng.sample(rids, 2 if kind == "pairwise" else sel.k)
            items.append((prompt_id, sorted(chosen)))
    if sel.limit is not None:
        items = items[: sel.limit]
    if not items:
        need = "a response" if kind == "rating" else f"{2 if kind == 'pairwise' else sel.k} responses"
        raise PreflineError(f"no prompt with {need} matches the selection", field="selection")
    campaign = Campaign(name=name, kind=kind, criteria=list(criteria), overlap=overlap,
                        blind=blind, instructions=instructions, status="active",
                        selection={"tags": list(sel.tags), "models": list(sel.models),
                                   "prompt_ids": list(sel.prompt_ids), "limit": sel.limit,
                                   "k": sel.k, "seed": sel.seed, "rubric": anchors})
    session.add(campaign)
    session.flush()
    session.add_all(CampaignItem(campaign_id=campaign.id, position=i, prompt_id=p,
                                 response_ids=r, done_count=0) for i, (p, r) in enumerate(items))
    audit(session, actor, "campaign.create", f"campaign:{name}", kind=kind, items=len(items),
          overlap=overlap)
    return campaign


def _check_campaign(session: Session, name: str, kind: str, criteria: Sequence[str],
                    overlap: int, sel: Selection) -> None:
    if kind not in CAMPAIGN_KINDS:
        raise PreflineError(f"kind must be one of {', '.join(CAMPAIGN_KINDS)}", field="kind")
    if overlap < 1:
        raise PreflineError("overlap must be at least 1", field="overlap")
    if kind == "rating" and not criteria:
        raise PreflineError("a rating campaign needs at least one criterion", field="criteria")
    if kind == "ranking" and not 2 <= sel.k <= 10:
        raise PreflineError("k must be between 2 and 10", field="k")
    if any(not c.strip() or len(c) > 100 for c in criteria):
        raise PreflineError("criteria must be non-empty names up to 100 characters",
                            field="criteria")
    if session.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
        raise PreflineError(f"campaign {name!r} already exists", field="name")


def load_rubric(path: Path) -> dict[str, dict[str, str]]:
    """A rubric file: TOML (``helpful = {1 = "ignores it", 5 = "answers fully"}``) or JSON
    (``{"helpful": {"1": "ignores it", "5": "answers fully"}}``)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PreflineError(f"cannot read the rubric: {exc}", path=str(path)) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise PreflineError("a rubric maps each criterion to a table of {score: meaning}",
                            path=str(path))
    return data


def _check_rubric(rubric: Mapping[str, Mapping[Any, str]],
                  criteria: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for criterion, anchors in rubric.items():
        if criterion not in criteria:
            raise PreflineError(f"rubric names {criterion!r}, which is not a criterion of "
                                f"this campaign ({', '.join(criteria) or 'none'})",
                                field="rubric")
        for score, text in anchors.items():
            if str(score) not in {"1", "2", "3", "4", "5"} or not str(text).strip() \
                    or len(str(text)) > 200:
                raise PreflineError(f"rubric for {criterion!r}: scores 1-5, each with a "
                                    f"text of 1-200 characters (got {score!r})", field="rubric")
        out[criterion] = {str(k): str(v).strip() for k, v in sorted(
            anchors.items(), key=lambda kv: int(kv[0]))}
    return out


DEFAULT_ANCHORS = {"1": "very poor", "3": "acceptable", "5": "excellent"}


def anchors(campaign: Campaign) -> list[dict[str, str]]:
    """Per criterion (in order), what each score means: the campaign's rubric, or a
    plain default so no scale is shown bare."""
    rubric = (campaign.selection or {}).get("rubric") or {}
    return [rubric.get(str(c)) or DEFAULT_ANCHORS for c in campaign.criteria]


def _responses_by_prompt(session: Session, sel: Selection) -> list[tuple[int, list[int]]]:
    stmt = select(Response.id, Response.prompt_id, Prompt.tags).join(Prompt).order_by(
        Response.prompt_id, Response.id)
    if sel.models:
        stmt = stmt.where(Response.model.in_(sel.models))
    if sel.prompt_ids:
        stmt = stmt.where(Response.prompt_id.in_(sel.prompt_ids))
    groups: dict[int, list[int]] = {}
    for rid, pid, tags in session.execute(stmt):
        if sel.tags and not set(sel.tags) <= set(tags or []):
            continue
        groups.setdefault(int(pid), []).append(int(rid))
    return list(groups.items())


def next_assignment(session: Session, campaign: Campaign, user: User) -> Assignment | None:
    """The user's open assignment in this campaign, or a new one; None when nothing is left."""
    open_one = session.scalar(select(Assignment).where(
        Assignment.campaign_id == campaign.id, Assignment.user_id == user.id,
        Assignment.status == "assigned").order_by(Assignment.id))
    if open_one is not None:
        return open_one
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Campaign.id).where(Campaign.id == campaign.id).with_for_update())
    fresh = utcnow() - ASSIGNMENT_TTL
    pending = (select(func.count()).select_from(Assignment)
               .where(Assignment.item_id == CampaignItem.id, Assignment.status == "assigned",
                      Assignment.assigned_at > fresh).scalar_subquery())
    mine = select(Assignment.item_id).where(Assignment.user_id == user.id,
                                            Assignment.campaign_id == campaign.id)
    item = session.scalar(select(CampaignItem).where(
        CampaignItem.campaign_id == campaign.id, CampaignItem.id.not_in(mine),
        CampaignItem.done_count + pending < campaign.overlap,
    ).order_by(CampaignItem.position).limit(1))
    if item is None:
        return None
    order = list(item.response_ids)
    random.SystemRandom().shuffle(order)
    assignment = Assignment(campaign_id=campaign.id, item_id=item.id, user_id=user.id,
                            shown_order=order, status="assigned")
    session.add(assignment)
    session.flush()
    return assignment


def submit_label(session: Session, assignment: Assignment, user: User,
                 label: dict[str, Any]) -> Feedback:
    """Store a label for an assignment as a Feedback row and mark the assignment done.

    ``label`` comes from ``labels.parse_label``: the kind-specific feedback columns.
    Submitting twice (a double click) returns the first label instead of a second row. On
    an assignment reopened by :func:`reopen` the label is an edit: a new row whose
    ``supersedes_id`` names the one it replaces; both are kept (the audit trail), and
    snapshots and audits read only the newest.
    """
    if assignment.status == "done" and assignment.feedback_id is not None:
        existing = session.get(Feedback, assignment.feedback_id)
        assert existing is not None
        return existing
    item = session.get(CampaignItem, assignment.item_id)
    assert item is not None
    replaces = assignment.feedback_id
    key = f"campaign:{assignment.campaign_id}/assignment:{assignment.id}"
    # Measured here, from handing out (or reopening) the task to its submission; never
    # taken from the form.
    elapsed = int((utcnow() - assignment.assigned_at).total_seconds() * 1000)
    fb = Feedback(annotator_id=user.annotator_id, prompt_id=item.prompt_id,
                  source=f"campaign:{assignment.campaign_id}", supersedes_id=replaces,
                  idempotency_key=key if replaces is None else f"{key}/replaces:{replaces}",
                  time_spent_ms=min(max(elapsed, 0), 2**31 - 1), **label)
    session.add(fb)
    session.flush()
    assignment.status, assignment.feedback_id = "done", fb.id
    assignment.completed_at = utcnow()
    if replaces is None:  # an edit replaces a label the item already counts
        item.done_count = CampaignItem.done_count + 1
    return fb


def reopen(session: Session, assignment: Assignment, actor: str) -> None:
    """Hand a labelled item back to its annotator to change the label (undo/edit).

    The old label stays current until the new one is submitted; the clock for the new
    one's ``time_spent_ms`` starts now. Skipping a reopened item keeps the old label.
    """
    if assignment.status != "done" or assignment.feedback_id is None:
        return
    assignment.status, assignment.assigned_at = "assigned", utcnow()
    audit(session, actor, "label.reopen", f"feedback:{assignment.feedback_id}",
          assignment=assignment.id)


SKIP_REASONS = {"unclear": "I cannot judge this (unclear or outside my expertise)",
                "broken": "The prompt or a response is broken or empty",
                "offensive": "Content I do not want to read",
                "other": "Other"}


def skip(session: Session, assignment: Assignment, reason: str, note: str = "") -> None:
    """Give an item back unlabelled, with the reason (``assignments.skip_reason``).

    It is not handed to this annotator again, and stays open for others. Skipping an
    item reopened for an edit just keeps its old label.
    """
    if assignment.status != "assigned":
        return
    if assignment.feedback_id is not None:
        assignment.status = "done"
        return
    if reason not in SKIP_REASONS:
        raise PreflineError(f"skip reason must be one of {', '.join(SKIP_REASONS)}",
                            field="reason")
    note = " ".join(note.split())[:500]
    if reason == "other" and not note:
        raise PreflineError("say why you skip (reason 'other' needs a note)", field="note")
    assignment.status = "skipped"
    assignment.skip_reason = f"{reason}: {note}" if note else reason
    assignment.completed_at = utcnow()


def progress(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Counts for the admin page: items, labels done / needed, labels per annotator."""
    items = session.scalar(select(func.count()).select_from(CampaignItem)
                           .where(CampaignItem.campaign_id == campaign.id)) or 0
    done = session.scalar(select(func.coalesce(func.sum(CampaignItem.done_count), 0))
                          .where(CampaignItem.campaign_id == campaign.id)) or 0
    complete = session.scalar(select(func.count()).select_from(CampaignItem).where(
        CampaignItem.campaign_id == campaign.id,
        CampaignItem.done_count >= campaign.overlap)) or 0
    per_user = session.execute(select(User.username, func.count()).join(
        Assignment, Assignment.user_id == User.id).where(
        Assignment.campaign_id == campaign.id, Assignment.status == "done").group_by(
        User.username).order_by(User.username)).all()
    needed = items * campaign.overlap
    return {"items": int(items), "labels_done": int(done), "labels_needed": needed,
            "items_complete": int(complete),
            "percent": round(100.0 * done / needed, 1) if needed else 0.0,
            "per_user": {u: int(n) for u, n in per_user}}


def user_progress(session: Session, campaign: Campaign, user: User) -> tuple[int, int]:
    """(labels this user gave, items they could still be given or have done)."""
    done = session.scalar(select(func.count()).select_from(Assignment).where(
        Assignment.campaign_id == campaign.id, Assignment.user_id == user.id,
        Assignment.status == "done")) or 0
    # Items still open to this user, including the one they are working on right now.
    mine_done = select(Assignment.item_id).where(Assignment.user_id == user.id,
                                                 Assignment.status.in_(("done", "skipped")))
    open_items = session.scalar(select(func.count()).select_from(CampaignItem).where(
        CampaignItem.campaign_id == campaign.id, CampaignItem.id.not_in(mine_done),
        CampaignItem.done_count < campaign.overlap)) or 0
    return int(done), int(done) + int(open_items)


def campaign_labels(session: Session, campaign: Campaign) -> list[dict[str, Any]]:
    """Every label in the campaign, one dict per label (the export format)."""
    rows = session.execute(
        select(Assignment, Feedback, User.username, CampaignItem.position)
        .join(Feedback, Feedback.id == Assignment.feedback_id)
        .join(User, User.id == Assignment.user_id)
        .join(CampaignItem, CampaignItem.id == Assignment.item_id)
        .where(Assignment.campaign_id == campaign.id).order_by(Feedback.id)).all()
    return [{"campaign": campaign.name, "item": pos, "annotator": username,
             "feedback_id": fb.id, "kind": fb.kind, "prompt_id": fb.prompt_id,
             "response_a_id": fb.response_a_id, "response_b_id": fb.response_b_id,
             "response_id": fb.response_id, "choice": fb.choice, "payload": fb.payload,
             "shown_left_id": fb.shown_left_id, "shown_order": a.shown_order,
             "supersedes_id": fb.supersedes_id,
             "rationale": fb.rationale, "time_spent_ms": fb.time_spent_ms,
             "created_at": fb.created_at.isoformat()}
            for a, fb, username, pos in rows]
