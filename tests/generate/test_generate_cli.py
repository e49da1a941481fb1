"""`prefline generate` + `prefline judge` end to end on the tiny model and a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from prefline.cli import main
from prefline.store.db import session_scope
from prefline.store.models import Annotator, Feedback, Response


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    main(argv)
    return json.loads(capsys.readouterr().out)


def test_generate_then_judge_into_the_store(tmp_path: Path, tiny_causal_dir: Path, sqlite_url: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Say hello.", "category": "writing"}\n'
                       '{"prompt": "How do I kill a stuck process?", "category": "should_not_refuse"}\n')
    gen = tmp_path / "gen.jsonl"
    res = _run(["generate", "--policy", str(tiny_causal_dir), "--prompts", str(prompts), "--n", "3",
                "--out", str(gen), "--max-new-tokens", "6", "--precision", "fp32",
                "--db", sqlite_url, "--json"], capsys)
    assert res["responses"] == 6 and res["stored"]["new_responses"] == 6
    lines = [json.loads(x) for x in gen.read_text().splitlines()]
    assert [len(x["responses"]) for x in lines] == [3, 3] and lines[1]["tags"] == ["should_not_refuse"]

    pairs = tmp_path / "pairs.jsonl"
    res = _run(["judge", "--judge", "rules", "--in", str(gen), "--out", str(pairs),
                "--db", sqlite_url, "--json"], capsys)
    assert res["pairs_judged"] == 6 and res["stored"]["stored"] == 6
    rows = [json.loads(x) for x in pairs.read_text().splitlines()]
    assert len(rows) == 6 and all({"prompt", "chosen", "rejected", "tie", "strength"} <= set(r) for r in rows)
    # Re-judging the same candidates adds nothing; best-worst writes at most one row per prompt.
    res = _run(["judge", "--judge", "rules", "--in", str(gen), "--out", str(pairs), "--pairs",
                "best-worst", "--db", sqlite_url, "--json"], capsys)
    assert res["stored"] == {"stored": 0, "existing": 6, "invalid": 0} and res["rows_written"] <= 2
    with session_scope(sqlite_url) as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 6
        assert s.scalar(select(func.count()).select_from(Response)) == 6  # judge reused them
        assert s.scalars(select(Annotator.kind)).all() == ["ai_judge"]


def test_bad_inputs_exit_2_with_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "gen.jsonl"
    bad.write_text('{"prompt": "x", "responses": ["a", "b"]}\nnot json\n')
    with pytest.raises(SystemExit) as exc:
        main(["judge", "--judge", "rules", "--in", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert exc.value.code == 2
    assert "line 2" in capsys.readouterr().err and not (tmp_path / "o.jsonl").exists()
    with pytest.raises(SystemExit):
        main(["judge", "--judge", "nope", "--in", str(bad), "--out", str(tmp_path / "o.jsonl")])
