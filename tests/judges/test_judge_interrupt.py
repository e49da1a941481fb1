"""`prefline judge` keeps what finished: an interrupt mid-run leaves the rows of the prompts
judged so far (valid JSONL) with their verdicts stored, and `--resume` finishes the job with
the same rows an uninterrupted run writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from prefline.base import interrupts
from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter
from prefline.judges import make_judge
from prefline.judges import run as judge_run
from prefline.judges.base import Verdict
from prefline.judges.run import JudgeConfig, run
from prefline.store.context import Context, Store
from prefline.store.db import session_scope
from prefline.store.models import Feedback


class StopsAfter:
    """The rules judge, but Ctrl-C arrives while it judges pair number ``limit``."""

    def __init__(self, limit: int) -> None:
        self.inner, self.limit, self.calls = make_judge("rules"), limit, 0
        self.name, self.both_orders = self.inner.name, self.inner.both_orders

    def config(self) -> dict[str, Any]:
        return self.inner.config()

    def judge(self, prompt: Any, a: str, b: str) -> Verdict:
        self.calls += 1
        if self.calls == self.limit:
            raise KeyboardInterrupt
        return self.inner.judge(prompt, a, b)

    def rate(self, prompt: Any, response: str) -> dict[str, float]:
        return self.inner.rate(prompt, response)


def _candidates(path: Path, n: int = 40) -> Path:
    rows = [{"prompt": f"Question {i}: how do rivers form?",
             "responses": ["Rain.", f"Water flows downhill and collects, case {i}.",
                           "I cannot help with that.", f"Rivers form from springs and rain ({i})."]}
            for i in range(n)]  # 4 distinct responses: 6 pairs per prompt, 240 in all
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_interrupt_keeps_finished_prompts_and_resume_completes(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cands = _candidates(tmp_path / "cands.jsonl")
    ctx = Context(store=Store.open(sqlite_url), progress=Reporter(enabled=False))
    whole = tmp_path / "whole.jsonl"
    run(JudgeConfig(judge="rules", in_file=cands, out=whole, store=False), ctx)

    out = tmp_path / "pairs.jsonl"
    cfg = JudgeConfig(judge="rules", in_file=cands, out=out)
    monkeypatch.setattr(judge_run, "make_judge", lambda spec, options: StopsAfter(100))
    interrupts.forget()
    with pytest.raises(KeyboardInterrupt):
        run(cfg, ctx)
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    # Chunks of whole prompts, >= 64 pairs each: 11 prompts (66 pairs) finished before pair 100.
    assert len(kept) == 66 and {r["prompt"][0]["content"] for r in kept} == {
        f"Question {i}: how do rivers form?" for i in range(11)}
    record = interrupts.kept()
    assert record is not None and record.resume_flag == "--resume"
    assert record.what == f"kept 11 of 40 prompts: 66 rows in {out}, their verdicts stored"
    with session_scope(sqlite_url) as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 66

    monkeypatch.undo()
    res = run(JudgeConfig(judge="rules", in_file=cands, out=out, resume=True), ctx)
    assert res.resumed == 11 and res.pairs_judged == 240 - 66 and res.rows_written == 240
    assert out.read_text() == whole.read_text()  # the same rows, in the same order
    assert res.stored == {"stored": 174, "existing": 0, "invalid": 0}


def test_resume_refuses_rows_of_another_judge(tmp_path: Path) -> None:
    cands, out = _candidates(tmp_path / "cands.jsonl", 2), tmp_path / "pairs.jsonl"
    out.write_text(json.dumps({"prompt": "Question 0: how do rivers form?", "chosen": "a",
                               "rejected": "b", "judge": "gpt-judge"}) + "\n")
    with pytest.raises(PreflineError, match="judged by 'gpt-judge', not 'principles'"):
        run(JudgeConfig(judge="rules", in_file=cands, out=out, resume=True, store=False),
            Context(progress=Reporter(enabled=False)))
