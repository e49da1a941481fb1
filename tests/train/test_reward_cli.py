"""``prefline train reward``: every setting in --help, config files, the whole command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prefline.base import config
from prefline.cli import main
from prefline.train.reward_config import RewardConfig


def _help(*args: str) -> str:
    from typer.testing import CliRunner

    from prefline.cli import app

    got = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "250"})
    assert got.exit_code == 0, got.output
    # rich wraps help text in boxes; flatten it so docs can be matched across lines
    return re.sub(r"[\s│╭╮╰╯─]+", " ", got.output)


def test_help_lists_every_setting_with_its_doc() -> None:
    text = _help("train", "reward")
    index = config.setting_index(RewardConfig)
    for s in config.settings(RewardConfig):
        flag = (s.name if index.get(s.name) is s else s.key).replace("_", "-")
        assert f"--{flag}" in text, s.key
        assert " ".join(s.doc.split()[:4]) in text, s.key
        assert "(default: " in text
    assert "--config" in text and "--out" in text and "--db" in text


def test_eval_reward_help_lists_every_setting() -> None:
    from prefline.evaluate.reward import RewardEvalConfig

    text = _help("eval", "reward")
    for s in config.settings(RewardEvalConfig):
        assert f"--{s.name.replace('_', '-')}" in text, s.key


def test_train_reward_command_records_model_and_heldout_eval(
        tiny_encoder_dir: Path, tmp_path: Path, sqlite_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.registry import get_artifact, inputs_of

    rows = [{"prompt": f"q{i}?", "chosen": "good answer " * (1 + i % 2), "rejected": "bad"}
            for i in range(30)] + [{"prompt": f"t{i}?", "completion": "ok", "label": True}
                                   for i in range(6)]
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = tmp_path / "reward.toml"
    settings.write_text(f'model = "{tiny_encoder_dir}"\nmax_length = 48\ntest_fraction = 0.3\n'
                        "[train]\nmax_steps = 2\nprecision = \"fp32\"\n")
    main(["train", "reward", "--data", str(data), "--config", str(settings), "--db", sqlite_url,
          "--out", str(tmp_path / "rm"), "--json", "lr=1e-3"])
    out = json.loads(capsys.readouterr().out)
    assert out["card"]["config"]["train"]["lr"] == 1e-3  # key=value wins over the file
    assert out["card"]["config"]["model"] == str(tiny_encoder_dir)
    # The thumbs of the training split (the file's test prompts are held out) are ignored.
    thumbs = out["counts"]["ignored"]["binary"]
    assert 0 < thumbs <= 6 and "KTO" in out["counts"]["why"]["binary"]
    art = get_artifact(out["artifact_id"], db=sqlite_url)
    assert art is not None and art.kind == "reward_model"
    held = out["heldout"]
    assert held["split"] == "test" and held["n_pairs"] == out["splits"]["test"] > 0
    roles = {r.role: r for r in inputs_of(held["artifact_id"], db=sqlite_url)}
    assert roles["reward_model"].artifact_id == out["artifact_id"]

    main(["train", "reward", "--data", str(data), "--config", str(settings), "--db", sqlite_url,
          "--out", str(tmp_path / "rm2")])
    text = capsys.readouterr().out
    assert "used " in text and f"ignored {thumbs} binary record(s)" in text
    assert "held-out (test split): accuracy" in text and str(tmp_path / "rm2") in text


def test_bad_setting_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "reward", "--data", "x.jsonl", "learning_rate=1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "prefline train reward --help" in err


def test_shipped_reward_config_parses_and_validates() -> None:
    path = Path(__file__).parents[2] / "configs" / "reward.toml"
    cfg = config.load(RewardConfig, path, {"snapshot": "v1"}, command="train reward")
    assert cfg.max_length == 256 and cfg.train.batch_size == 16 and cfg.snapshot == "v1"
