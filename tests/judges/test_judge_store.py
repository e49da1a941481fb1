"""Verdicts land in the store as ai_judge pairwise feedback with the judge's full config."""

from __future__ import annotations

from sqlalchemy import func, select

from prefline.judges.base import Verdict
from prefline.judges.principles import PrincipleConfig, PrincipleJudge
from prefline.judges.store import JudgedPair, store_verdicts
from prefline.store.db import session_scope
from prefline.store.models import Annotator, Feedback, Prompt, Response

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def _pairs(judge: PrincipleJudge) -> list[JudgedPair]:
    texts = ["Paris.", "The capital of France is Paris, which", "It is Paris. It is Paris. It is Paris."]
    return [JudgedPair(PROMPT, a, b, judge.judge(PROMPT, a, b), ("factual",), "m1", {"seed": 0})
            for a, b in [(texts[0], texts[1]), (texts[0], texts[2]), (texts[1], texts[2])]]


def test_verdicts_stored_with_full_config_and_idempotent(db_url: str) -> None:
    judge = PrincipleJudge()
    pairs = _pairs(judge)
    assert store_verdicts(db_url, judge, pairs) == {"stored": 3, "existing": 0, "invalid": 0}
    assert store_verdicts(db_url, judge, pairs) == {"stored": 0, "existing": 3, "invalid": 0}
    with session_scope(db_url) as s:
        ann = s.scalars(select(Annotator)).one()
        assert ann.kind == "ai_judge" and ann.config == judge.config()
        rows = s.scalars(select(Feedback).order_by(Feedback.id)).all()
        assert len(rows) == 3 and all(r.kind == "pairwise" and r.source == "judge:principles" for r in rows)
        assert [r.choice for r in rows] == [p.verdict.choice for p in pairs]
        assert rows[0].payload["strength"] == round(pairs[0].verdict.confidence, 6)
        assert rows[0].shown_left_id == rows[0].response_a_id
        assert s.scalar(select(func.count()).select_from(Response)) == 3
        assert s.scalars(select(Prompt.tags)).one() == ["factual"]


def test_other_config_is_another_annotator_and_invalid_not_stored(sqlite_url: str) -> None:
    judge = PrincipleJudge()
    store_verdicts(sqlite_url, judge, _pairs(judge))
    other = PrincipleJudge(PrincipleConfig(max_words=40))
    bad = JudgedPair(PROMPT, "x", "y", Verdict("tie", 0.0, "unparseable", {"parse_error": True}))
    counts = store_verdicts(sqlite_url, other, [*_pairs(other), bad])
    assert counts == {"stored": 3, "existing": 0, "invalid": 1}
    with session_scope(sqlite_url) as s:
        assert s.scalar(select(func.count()).select_from(Annotator)) == 2
        assert s.scalar(select(func.count()).select_from(Feedback)) == 6
