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


def help_text(argv: list[str]) -> str:
    """``--help`` output wide enough that no option name is wrapped."""
    from typer.testing import CliRunner

    from prefline.cli import app

    res = CliRunner().invoke(app, argv, env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    return res.output


def test_generate_help_lists_every_setting() -> None:
    from prefline.base import config
    from prefline.generate.run import GenerateConfig

    text = help_text(["generate", "--help"])
    for s in config.settings(GenerateConfig):
        flag = f"--{s.name.replace('_', '-')}"
        assert flag in text and (s.hint is not bool or f"--no-{s.name}" in text), s.name
        assert s.doc.split(".")[0] in " ".join(text.split()), s.name
    assert "(default: required)" in text and "--db" in text and "--device" in text


def test_generate_run_from_python_without_the_store(tmp_path: Path, tiny_causal_dir: Path) -> None:
    """The stage as the Python API calls it: a Context with no progress bars, store off, a
    config file's settings, the bundled prompts; the file lines carry the generation settings."""
    from prefline.base import config
    from prefline.base.progress import Reporter
    from prefline.generate.run import GenerateConfig, run
    from prefline.store.context import Context, Store

    cfg_file = tmp_path / "gen.toml"
    cfg_file.write_text('prompts = "bundled:eval"\nn = 2\nmax_new_tokens = 4\nlimit = 3\n'
                        'precision = "fp32"\nstore = false\n')
    cfg = config.load(GenerateConfig, cfg_file, {"out": str(tmp_path / "c.jsonl"),
                                                 "policy": str(tiny_causal_dir)})
    db = tmp_path / "never.db"
    result = run(cfg, Context(store=Store.open(str(db)), progress=Reporter(enabled=False)))
    assert (result.prompts, result.responses, result.stored) == (3, 6, None)
    assert not db.exists()
    lines = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert lines[0]["tags"] == ["coding"] and lines[0]["gen_params"]["n"] == 2
    assert result.to_json()["gen_params"]["dtype"] == "float32"


@pytest.mark.parametrize(("args", "message"), [
    (["--n", "0"], "field 'n': expected an integer >= 1, got 0"),
    (["--top-p", "1.5"], "field 'top_p': expected a number in (0, 1]"),
    (["--precision", "fp8"], "field 'precision': expected one of auto, bf16, fp32"),
    ([], "field 'prompts': missing required setting"),
])
def test_generate_bad_settings_fail_before_loading(args: list[str], message: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    base = [] if not args else ["--prompts", "bundled:eval"]
    with pytest.raises(SystemExit) as exc:
        main(["generate", *base, "--out", str(tmp_path / "o.jsonl"), "--policy", "/nowhere",
              *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
