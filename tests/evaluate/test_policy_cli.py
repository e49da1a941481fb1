"""``prefline eval policy``: derived from PolicyEvalConfig; JSON, HTML report, registry record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefline.base import config
from prefline.cli import app, main
from prefline.evaluate.policy_config import PolicyEvalConfig
from prefline.registry import Ref, get_artifact, inputs_of


def test_eval_policy_cli_prints_json_writes_a_report_and_records(
        tiny_causal_dir: Path, tmp_path: Path, sqlite_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "How do I kill a stuck process?", "category": "should_not_refuse"}\n'
                       '"What is 3 times 4?"\n')
    report, run_dir = tmp_path / "eval.html", tmp_path / "run"
    main(["eval", "policy", "--policy", str(tiny_causal_dir), "--baseline", str(tiny_causal_dir),
          "--prompts", str(prompts), "--judge", "rules", "--max-new-tokens", "8", "--json",
          "--report", str(report), "--out", str(run_dir), "--db", sqlite_url])
    out = json.loads(capsys.readouterr().out)
    assert out["n_prompts"] == 2 and out["judge"]["n"] == 2
    assert out["judge"]["win_rate"] == 0.5  # the same model and seed: every pair ties
    assert out["verdict"]["target_met"] is False
    assert "data:image/png;base64," in report.read_text()
    art = get_artifact(out["artifact_id"], sqlite_url)
    assert art is not None and art.kind == "evaluation"
    assert Path(art.path) == (run_dir / "eval.json").resolve()
    assert art.metrics["judge"] == "rules" and art.metrics["judge_win_rate"] == 0.5
    assert Ref("judge", ref="rules") in inputs_of(out["artifact_id"], sqlite_url)


def test_help_lists_every_setting() -> None:
    text = CliRunner().invoke(app, ["eval", "policy", "--help"], env={"COLUMNS": "250"}).output
    for s in config.settings(PolicyEvalConfig):
        assert f"--{s.name.replace('_', '-')}" in text, s.name
        assert s.doc.split(".")[0].split(":")[0] in " ".join(text.split()), s.name
    assert "--out" in text and "(default: required)" in text


def test_missing_policy_and_bad_prompt_file_are_one_sentence(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "policy", "--baseline", "default"])
    assert exc.value.code == 2 and "field 'policy': missing required setting" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt key"}\n')
    with pytest.raises(SystemExit) as exc:
        main(["eval", "policy", "--policy", "/nowhere", "--baseline", "default", "--prompts",
              str(bad), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "bad.jsonl, line 2, field 'prompt'" in err
