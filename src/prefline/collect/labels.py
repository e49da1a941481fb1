"""Turning a submitted task form into feedback columns.

The browser only says "left", "right" or a rank per shown response; which response was
left comes from the assignment stored on the server, so a tampered form cannot relabel
the pair. Pairwise labels keep the item's canonical order (a = first response id).
"""

from __future__ import annotations

from typing import Any

from prefline.store.collect_models import Assignment, Campaign

LIKERT = (1, 2, 3, 4, 5)
STRENGTHS = {"": None, "slight": 0.33, "clear": 0.67, "strong": 1.0}


def parse_label(campaign: Campaign, assignment: Assignment, form: dict[str, str]) -> dict[str, Any]:
    """Form fields → kwargs for ``Feedback``; raises ValueError naming the bad field."""
    shown = [int(i) for i in assignment.shown_order]
    rationale = (form.get("rationale") or "").strip()[:20_000] or None
    # No time_spent_ms from the browser: the server measures it (see submit_label), so a
    # client cannot hide fast clicking from the audit.
    out: dict[str, Any] = {"kind": campaign.kind, "rationale": rationale}
    if campaign.kind == "pairwise":
        out.update(_pairwise(shown, form))
    elif campaign.kind == "rating":
        out.update(_rating(campaign, shown, form))
    else:
        out.update(_ranking(shown, form))
    return out


def _pairwise(shown: list[int], form: dict[str, str]) -> dict[str, Any]:
    side = form.get("choice", "")
    if side not in ("left", "right", "tie", "both_bad"):
        raise ValueError("choice: pick left, right, tie or both bad")
    strength_name = form.get("strength", "")
    if strength_name not in STRENGTHS:
        raise ValueError("strength: pick slight, clear or strong")
    a, b = sorted(shown)
    left = shown[0]
    if side in ("left", "right"):
        picked = left if side == "left" else shown[1]
        choice = "a" if picked == a else "b"
    else:
        choice = side
    strength = STRENGTHS[strength_name] if side in ("left", "right") else None
    return {"response_a_id": a, "response_b_id": b, "shown_left_id": left, "choice": choice,
            "payload": {"choice": choice, "strength": strength}}


def _rating(campaign: Campaign, shown: list[int], form: dict[str, str]) -> dict[str, Any]:
    scores: dict[str, float] = {}
    for i, criterion in enumerate(campaign.criteria):
        raw = form.get(f"score_{i}", "")
        if not raw.isdigit() or int(raw) not in LIKERT:
            raise ValueError(f"{criterion}: pick a score from 1 to 5")
        scores[str(criterion)] = float(raw)
    return {"response_id": shown[0], "payload": {"scores": scores}}


def _ranking(shown: list[int], form: dict[str, str]) -> dict[str, Any]:
    ranks: dict[int, int] = {}
    for rid in shown:
        raw = form.get(f"rank_{rid}", "")
        if not raw.isdigit():
            raise ValueError("rank: give every response a rank")
        ranks[rid] = int(raw)
    if sorted(ranks.values()) != list(range(1, len(shown) + 1)):
        raise ValueError(f"rank: use each rank from 1 to {len(shown)} exactly once")
    order = sorted(shown, key=lambda r: ranks[r])
    return {"payload": {"order": order, "shown_order": shown}}
