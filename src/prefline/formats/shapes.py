"""Record shapes of public datasets, mapped onto prefline's four (docs/formats.md).

Each foreign shape is rewritten into a native record (``prefline.formats.records``), which
then goes through the one validator; a field problem is reported under the field name of
the *input* row (``instruction``, ``completions[2].response``, ``thumbs``), not the native one.

- ``ultrafeedback`` (openbmb/UltraFeedback): ``instruction`` + ``completions[]`` with
  ``response`` and ``overall_score`` → one rating per completion, ``{"overall_score": s}``.
  Ratings, not a ranking: equal scores are common and a ranking would invent an order.
- ``thumbs``: ``prompt`` + ``response`` + ``label`` or ``thumbs`` (true/false, 1/0, "up"/"down")
  → an unpaired (KTO) record.
- ``likert``: ``prompt`` + ``response`` + ``rating`` or ``score`` (a number, or
  ``{criterion: number}``) → a rating; with an explicit ``--format likert``, rows without
  either (nvidia/HelpSteer2: ``helpfulness``, ``correctness``, ...) rate every numeric column.
- ``ranking``: ``prompt`` + ``ranking``: either indices into ``responses`` (best first) or the
  response texts best first; or ``answers[]`` with ``answer`` + ``rank`` (1 = best,
  berkeley-nest/Nectar).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from prefline.formats.records import Where

SHAPE_FORMATS = ("ultrafeedback", "thumbs", "likert", "ranking")
"""``--format`` values naming a record shape (the container is then told by the file)."""

Native = tuple[dict[str, Any], dict[str, str]]
"""A native record and, per native field, the input field to name in errors."""

_THUMBS = {"up": True, "down": False, "thumbs_up": True, "thumbs_down": False, "true": True,
           "false": False, "1": True, "0": False, "yes": True, "no": False, "+1": True,
           "-1": False}
_META = ("tags", "annotator", "annotator_kind", "user", "segment")
_NOT_CRITERIA = {"prompt", "response", "id", "source", *_META}


def detect_shape(rec: dict[str, Any]) -> str | None:
    """The foreign shape of ``rec`` told by its keys (None: a native record or unknown)."""
    if "instruction" in rec and "completions" in rec:
        return "ultrafeedback"
    if "ranking" in rec or ("answers" in rec and "prompt" in rec):
        return "ranking"
    if "response" in rec and "scores" not in rec:
        if "label" in rec or "thumbs" in rec:
            return "thumbs"
        if "rating" in rec or "score" in rec:
            return "likert"
    return None


def _keep_meta(rec: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    out.update({k: rec[k] for k in _META if k in rec})
    return out


def _number(value: Any, where: Where, field: str) -> float:
    if isinstance(value, str):  # CSV cells, and datasets that store scores as text
        try:
            value = float(value.strip())
        except ValueError:
            raise where.error(f"expected a number, got {value!r}", field) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise where.error(f"expected a number, got {value!r}", field)
    return float(value)


def _ultrafeedback(rec: dict[str, Any], where: Where) -> list[Native]:
    completions = rec.get("completions")
    if not isinstance(completions, list) or not completions:
        raise where.error("expected a non-empty list of completions", "completions")
    out = []
    for i, c in enumerate(completions):
        field = f"completions[{i}]"
        if not isinstance(c, dict):
            raise where.error("expected an object with 'response' and 'overall_score'", field)
        if c.get("overall_score") is None:
            raise where.error("missing required field", f"{field}.overall_score")
        score = _number(c["overall_score"], where, f"{field}.overall_score")
        native = {"prompt": rec["instruction"], "response": c.get("response"),
                  "scores": {"overall_score": score}}
        out.append((_keep_meta(rec, native),
                    {"prompt": "instruction", "response": f"{field}.response"}))
    return out


def _thumbs(rec: dict[str, Any], where: Where) -> list[Native]:
    field = "thumbs" if "thumbs" in rec else "label"
    if field not in rec:
        raise where.error("expected 'label' or 'thumbs' (true/false, 1/0, up/down)", "label")
    value = rec[field]
    if isinstance(value, int | float) and not isinstance(value, bool) and value in (0, 1):
        value = bool(value)
    elif isinstance(value, str) and value.strip().lower() in _THUMBS:
        value = _THUMBS[value.strip().lower()]
    if not isinstance(value, bool):
        raise where.error(f"expected true/false, 1/0 or up/down, got {value!r}", field)
    reply = "response" if "response" in rec else "completion"
    native = {"prompt": rec.get("prompt"), "completion": rec.get(reply), "label": value}
    return [(_keep_meta(rec, native), {"completion": reply, "label": field})]


def _likert(rec: dict[str, Any], where: Where) -> list[Native]:
    field: str | None = next((f for f in ("rating", "score") if f in rec), None)
    if field is None:  # HelpSteer-style: one numeric column per criterion
        scores = {k: float(v) for k, v in rec.items() if k not in _NOT_CRITERIA
                  and isinstance(v, int | float) and not isinstance(v, bool)}
        if not scores:
            raise where.error("expected 'rating' or 'score' (a number or {criterion: number}) "
                              "or numeric criterion columns", "rating")
        field = "scores"
    elif isinstance(rec[field], dict):
        scores = {k: _number(v, where, f"{field}.{k}") for k, v in rec[field].items()}
    else:
        scores = {field: _number(rec[field], where, field)}
    native = {"prompt": rec.get("prompt"), "response": rec.get("response"), "scores": scores}
    return [(_keep_meta(rec, native), {"scores": str(field)})]


def _ranking(rec: dict[str, Any], where: Where) -> list[Native]:
    if "ranking" not in rec and isinstance(rec.get("answers"), list):  # Nectar
        answers = rec["answers"]
        for i, a in enumerate(answers):
            if not isinstance(a, dict) or "answer" not in a or "rank" not in a:
                raise where.error("expected an object with 'answer' and 'rank'", f"answers[{i}]")
        ranks = [_number(a["rank"], where, f"answers[{i}].rank") for i, a in enumerate(answers)]
        order = sorted(range(len(answers)), key=lambda i: ranks[i])
        if len(set(ranks)) != len(ranks):
            raise where.error("ranks must be distinct (1 = best)", "answers")
        native = {"prompt": rec.get("prompt"), "responses": [a["answer"] for a in answers],
                  "order": order}
        return [(_keep_meta(rec, native), {"responses": "answers", "order": "answers"})]
    ranking = rec.get("ranking")
    if not isinstance(ranking, list):
        raise where.error("expected a list: indices into 'responses' or response texts, best "
                          "first", "ranking")
    if "responses" in rec:
        native = {"prompt": rec.get("prompt"), "responses": rec["responses"], "order": ranking}
    else:
        native = {"prompt": rec.get("prompt"), "responses": ranking,
                  "order": list(range(len(ranking)))}
    return [(_keep_meta(rec, native), {"order": "ranking"} if "responses" in rec
             else {"responses": "ranking", "order": "ranking"})]


_SHAPES: dict[str, Callable[[dict[str, Any], Where], list[Native]]] = {
    "ultrafeedback": _ultrafeedback, "thumbs": _thumbs, "likert": _likert, "ranking": _ranking}

EXPECTED = {
    "ultrafeedback": "'instruction' and 'completions' (each with 'response' and 'overall_score')",
    "thumbs": "'prompt', 'response' and 'label' or 'thumbs'",
    "likert": "'prompt', 'response' and 'rating' or 'score'",
    "ranking": "'prompt' and 'ranking' (or 'answers' with 'rank')",
}


def to_native(shape: str, rec: dict[str, Any], where: Where, *, explicit: bool) -> list[Native]:
    """``rec`` of foreign ``shape`` as native records; raises BadRecord naming input fields.

    ``explicit`` (the user said ``--format SHAPE``): a row lacking the shape's key fields
    is refused saying what the shape needs, instead of being guessed at."""
    if explicit and shape != "likert" and detect_shape(rec) != shape:
        raise where.error(f"--format {shape} expects {EXPECTED[shape]}; the row has fields "
                          f"{sorted(rec)}")
    return _SHAPES[shape](rec, where)
