"""Turning a submitted task form into feedback columns.

The browser only says "left", "right" or a rank per shown response; which response was
left comes from the assignment stored on the server, so a tampered form cannot relabel
the pair. Pairwise labels keep the item's canonical order (a = first response id).
"""

from __future__ import annotations

from typing import Any

from prefline.store.collect_models import Assignment, Campaign
from prefline.store.models import Feedback, Prompt

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


def form_values(fb: Feedback, shown: list[int], criteria: list[str]) -> dict[str, str]:
    """The form fields that would produce ``fb`` on this assignment (the inverse of
    :func:`parse_label`), to prefill the task when its annotator edits the label."""
    values = {"rationale": fb.rationale or ""}
    payload = fb.payload or {}
    if fb.kind == "pairwise":
        values["choice"] = _side(fb, shown) or str(fb.choice or "")
        names = {v: k for k, v in STRENGTHS.items()}
        values["strength"] = names.get(payload.get("strength"), "")
    elif fb.kind == "rating":
        scores = payload.get("scores") or {}
        for i, name in enumerate(criteria):
            if name in scores:
                values[f"score_{i}"] = str(int(scores[name]))
    elif fb.kind == "ranking":
        for rank, rid in enumerate(payload.get("order") or [], start=1):
            values[f"rank_{rid}"] = str(rank)
    return values


def describe(fb: Feedback) -> str:
    """A label in the terms its annotator saw it: left/right for pairs, the shown order
    (A, B, C, ...) for rankings, the score per criterion for ratings."""
    payload = fb.payload or {}
    if fb.kind == "pairwise":
        left = fb.shown_left_id or fb.response_a_id
        right = fb.response_b_id if left == fb.response_a_id else fb.response_a_id
        side = _side(fb, [int(left or 0), int(right or 0)])
        strength = {v: k for k, v in STRENGTHS.items()}.get(payload.get("strength")) or ""
        if side == "left":
            verdict = f"left better than right{', ' + strength if strength else ''}"
        elif side == "right":
            verdict = f"right better than left{', ' + strength if strength else ''}"
        else:
            verdict = "tie" if fb.choice == "tie" else "both bad"
        return f"left #{left}, right #{right}: {verdict}"
    if fb.kind == "ranking":
        order = [int(r) for r in payload.get("order") or []]
        shown = [int(r) for r in payload.get("shown_order") or order]
        letter = {rid: chr(ord("A") + i) for i, rid in enumerate(shown)}
        seen = ", ".join(f"{letter[r]} #{r}" for r in shown)
        return f"shown {seen}; ranked " + " > ".join(letter.get(r, f"#{r}") for r in order)
    if fb.kind == "rating":
        scores = payload.get("scores") or {}
        return ", ".join(f"{name} {score:g}" for name, score in scores.items())
    return ", ".join(f"{k} {v}" for k, v in payload.items())


def _side(fb: Feedback, shown: list[int]) -> str | None:
    """Which side (left/right) the chosen response of a pairwise label was shown on."""
    if fb.choice not in ("a", "b") or len(shown) != 2:
        return None
    picked = fb.response_a_id if fb.choice == "a" else fb.response_b_id
    left = fb.shown_left_id if fb.shown_left_id is not None else shown[0]
    return "left" if picked == left else "right"


def prompt_text(prompt: Prompt | None) -> str:
    """A prompt as a person reads it: its text, or a chat's last user turn."""
    if prompt is None:
        return ""
    if prompt.messages:
        users = [m for m in prompt.messages if m.get("role") == "user"] or prompt.messages
        return str(users[-1].get("content", ""))
    return prompt.text or ""
