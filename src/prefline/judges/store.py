"""Store judge verdicts as pairwise feedback from an ``ai_judge`` annotator.

The annotator row carries the judge's full config, and its name includes a hash of that
config, so two differently configured judges are two annotators (the audit can compare
them). Each verdict's idempotency key hashes the config, prompt and both responses:
re-judging the same pairs with the same judge adds nothing.

Texts pass ``base.text`` first: a prompt or response the store cannot hold (a lone
surrogate, NUL) is the caller's bad input and fails naming the pair and field; a judge's own
output that cannot be stored (rationale, details) makes the verdict invalid, like unparseable
output, so a later re-run can still label the pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.base.text import bad_char, check_json, check_text
from prefline.formats.examples import Messages
from prefline.generate.store import upsert_prompt, upsert_response
from prefline.judges.base import Judge, Verdict, verdict_key
from prefline.store.db import audit, session_scope
from prefline.store.models import Annotator, Feedback


@dataclass(frozen=True)
class JudgedPair:
    """One verdict on responses ``a`` and ``b`` (produced by ``model``) to ``prompt``."""

    prompt: Messages
    a: str
    b: str
    verdict: Verdict
    tags: tuple[str, ...] = ()
    model: str | None = None
    gen_params: dict[str, Any] | None = None


def judge_annotator(session: Session, judge: Judge) -> Annotator:
    """The ``ai_judge`` annotator for this exact judge config (created on first use)."""
    config = judge.config()
    name = f"judge:{judge.name}:{content_hash(config)[:12]}"
    row = session.scalar(select(Annotator).where(Annotator.name == name))
    if row is None:
        row = Annotator(name=name, kind="ai_judge", role="judge", config=config)
        session.add(row)
        session.flush()
    return row


def store_verdicts(db: str | None, judge: Judge, pairs: Sequence[JudgedPair],
                   actor: str = "cli") -> dict[str, int]:
    """Insert one pairwise feedback row per valid verdict, in one transaction.

    Verdicts without a usable answer (``not verdict.valid``, e.g. unparseable judge output)
    are not stored, so a later re-run can still label those pairs. Returns counts:
    ``stored``, ``existing`` (already judged by this judge) and ``invalid``.
    """
    config = judge.config()
    counts = {"stored": 0, "existing": 0, "invalid": 0}
    for i, pair in enumerate(pairs):  # before hashing: the keys hash these texts
        _check_inputs(pair, i)
    with session_scope(db) as session:
        annotator = judge_annotator(session, judge)
        keys = {i: "judge:" + verdict_key(config, p.prompt, p.a, p.b) for i, p in enumerate(pairs)}
        existing = _existing_keys(session, list(keys.values()))
        for i, pair in enumerate(pairs):
            if not pair.verdict.valid or not _storable_output(pair.verdict):
                counts["invalid"] += 1
                continue
            if keys[i] in existing:
                counts["existing"] += 1
                continue
            existing.add(keys[i])
            session.add(_feedback_row(session, judge, annotator.id, pair, keys[i]))
            counts["stored"] += 1
        audit(session, actor, "judge.store", annotator.name, **counts)
    return counts


def _check_inputs(pair: JudgedPair, i: int) -> None:
    """Raise PreflineError naming ``pairs[i].<field>`` when an input text cannot be stored."""
    for j, msg in enumerate(pair.prompt):
        check_text(msg["content"], field=f"pairs[{i}].prompt[{j}].content")
    check_text(pair.a, field=f"pairs[{i}].a")
    check_text(pair.b, field=f"pairs[{i}].b")
    check_json(pair.gen_params, field=f"pairs[{i}].gen_params")


def _storable_output(v: Verdict) -> bool:
    """False when the judge's rationale or details hold text the store cannot hold."""
    if v.rationale is not None and bad_char(v.rationale) is not None:
        return False
    try:
        check_json(v.details, field="details")
    except PreflineError:
        return False
    return True


def _existing_keys(session: Session, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), 500):  # stay under the bound-parameter limits
        chunk = keys[i:i + 500]
        found.update(session.scalars(select(Feedback.idempotency_key)
                                     .where(Feedback.idempotency_key.in_(chunk))))
    return found


def _feedback_row(session: Session, judge: Judge, annotator_id: int, pair: JudgedPair,
                  key: str) -> Feedback:
    pid, phash = upsert_prompt(session, pair.prompt, pair.tags)
    a_id, _ = upsert_response(session, pid, phash, pair.a, pair.model, pair.gen_params)
    b_id, _ = upsert_response(session, pid, phash, pair.b, pair.model, pair.gen_params)
    v = pair.verdict
    return Feedback(
        kind="pairwise", annotator_id=annotator_id, prompt_id=pid,
        response_a_id=a_id, response_b_id=b_id, choice=v.choice,
        payload={"choice": v.choice, "strength": round(v.confidence, 6), "details": v.details},
        rationale=v.rationale,
        # A judge that looked at both orders has no "left" side; otherwise a was shown first.
        shown_left_id=None if judge.both_orders else a_id,
        idempotency_key=key, source=f"judge:{judge.name}",
    )
