"""Issue 16: judges' outputs pass text hygiene before they are stored (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from tests.store.hardening_invariant import assert_store_usable

from prefline.base.errors import PreflineError
from prefline.judges.base import Verdict
from prefline.judges.principles import PrincipleJudge
from prefline.judges.store import JudgedPair, store_verdicts
from prefline.store.db import session_scope
from prefline.store.models import Feedback

PROMPT = [{"role": "user", "content": "Capital of France?"}]


def test_unstorable_judge_output_is_invalid_and_bad_input_names_the_field(
        db_url: str, tmp_path: Path) -> None:
    judge = PrincipleJudge()
    good = JudgedPair(PROMPT, "Paris.", "Lyon.", Verdict("a", 0.9, "Paris is right"))
    bad_rationale = JudgedPair(PROMPT, "Paris!", "Nice.", Verdict("a", 0.9, "odd \ud800 token"))
    bad_details = JudgedPair(PROMPT, "Paris?", "Nice!",
                             Verdict("b", 0.9, "ok", {"raw": "x\x00y"}))
    counts = store_verdicts(db_url, judge, [good, bad_rationale, bad_details])
    assert counts == {"stored": 1, "existing": 0, "invalid": 2}
    with session_scope(db_url) as s:
        assert s.scalars(select(Feedback.rationale)).all() == ["Paris is right"]
    bad_input = JudgedPair(PROMPT, "Paris", "Ly\ud800on", Verdict("a", 0.9, "fine"))
    with pytest.raises(PreflineError, match=r"pairs\[0\]\.b.*character 2"):
        store_verdicts(db_url, judge, [bad_input])
    assert_store_usable(db_url, tmp_path / "out")
