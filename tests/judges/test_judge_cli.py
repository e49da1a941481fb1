"""The judge stage: ``run(JudgeConfig, ctx)`` from Python and ``prefline judge`` derived from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter
from prefline.cli import app, main
from prefline.judges.run import JudgeConfig, run
from prefline.store.context import Context, Store

CANDIDATES = [
    {"prompt": "What is 2 + 2?", "responses": ["4.", "2 + 2 is 4.", "4."], "tags": ["maths"]},
    {"prompt": "Say hi.", "responses": ["Hi!", "Hello there, friend!"]},
]


def _candidates(tmp_path: Path) -> Path:
    path = tmp_path / "cands.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in CANDIDATES))
    return path


def test_help_lists_every_setting() -> None:
    text = CliRunner().invoke(app, ["judge", "--help"], env={"COLUMNS": "250"}).output
    for s in config.settings(JudgeConfig):
        flag = "--in" if s.name == "in_file" else f"--{s.name.replace('_', '-')}"
        assert flag in text and (s.hint is not bool or f"--no-{s.name}" in text), s.name
        assert s.doc.split(".")[0] in " ".join(text.split()), s.name
    assert "--in-file" not in text


def test_run_from_python_drops_ties_and_skips_the_store(tmp_path: Path) -> None:
    """Duplicate responses are never paired (2 pairs, not 4); ``ties="drop"`` leaves tie
    rows out of the file; ``store=False`` leaves the store untouched."""
    out = tmp_path / "pairs.jsonl"
    db = tmp_path / "never.db"
    cfg = JudgeConfig(judge="rules", in_file=_candidates(tmp_path), out=out, ties="drop",
                      store=False)
    result = run(cfg, Context(store=Store.open(str(db)), progress=Reporter(enabled=False)))
    assert result.pairs_judged == 2 and result.stored is None and not db.exists()
    assert sum(result.choices.values()) + result.invalid == 2
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == result.rows_written == 2 - result.choices["tie"]
    assert all(not r["tie"] and r["judge"] == result.judge_name == "principles" for r in rows)
    assert result.judge == "rules"  # the spec the user typed
    assert result.to_json()["judge_config"] == result.judge_config


def test_judge_options_reach_the_judge_and_unknown_ones_are_named(tmp_path: Path, sqlite_url: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    cands, out = _candidates(tmp_path), tmp_path / "p.jsonl"
    main(["judge", "--judge", "rules", "--in", str(cands), "--out", str(out), "--db", sqlite_url,
          "--judge-options", '{"tie_margin": 0.9}', "--json"])
    res = json.loads(capsys.readouterr().out)
    assert res["judge_config"]["tie_margin"] == 0.9 and res["stored"]["stored"] == 2
    with pytest.raises(SystemExit) as exc:
        main(["judge", "--judge", "rules", "--in", str(cands), "--out", str(out),
              "--judge-options", '{"bogus": 1}'])
    assert exc.value.code == 2 and "unknown judge option(s) ['bogus']" in capsys.readouterr().err


@pytest.mark.parametrize(("spec", "message"), [
    ("nope", "field 'judge': unknown judge 'nope'"),
    ("openai:", "field 'judge': judge spec 'openai:' needs an argument"),
])
def test_bad_judge_spec_fails_in_the_config(spec: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(PreflineError, match=message):
        JudgeConfig(judge=spec, in_file=tmp_path / "x", out=tmp_path / "y")
