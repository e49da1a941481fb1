"""The one config system: coercion, nesting, files, errors, TOML output, derived options."""

from __future__ import annotations

import inspect
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer
from typer.testing import CliRunner

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.cli.options import STAGE_COMMANDS, stage_command


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    """Learning rate."""
    seed: int = 0
    """Seed."""
    max_steps: int | None = None
    """Optional cap."""


@dataclass(frozen=True)
class Outer:
    beta: float = 0.1
    """KL strength."""
    mode: Literal["a", "b"] = "a"
    """Mode."""
    lora: bool = False
    """Use LoRA."""
    heads: tuple[str, ...] = ("reward",)
    """Head names."""
    weights: dict[str, float] = field(default_factory=dict)
    """Per-head weights."""
    train: Inner = field(default_factory=Inner)
    lr: float = 5.0
    """Same leaf name as train.lr: only reachable as `lr` here, `train.lr` there."""

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise PreflineError("beta must be positive", field="beta")


def test_docs_and_settings_are_read_from_attribute_docstrings() -> None:
    keys = {s.key: s for s in config.settings(Outer)}
    assert keys["train.lr"].doc == "Learning rate."
    assert keys["beta"].doc == "KL strength." and keys["beta"].default == 0.1
    index = config.setting_index(Outer)
    assert index["lr"].key == "lr" and index["seed"].key == "train.seed"


def test_build_coerces_strings_and_nested_keys() -> None:
    cfg = config.build(Outer, {"beta": "0.25", "lora": "yes", "heads": "a, b", "mode": "b",
                               "train.lr": "1e-4", "seed": "3", "max_steps": "none",
                               "weights": '{"a": 2}'})
    assert cfg == Outer(beta=0.25, mode="b", lora=True, heads=("a", "b"),
                        weights={"a": 2.0}, train=Inner(lr=1e-4, seed=3))


@pytest.mark.parametrize(("values", "message"), [
    ({"bta": 1}, "field 'bta': unknown setting; see `prefline x --help`"),
    ({"beta": "x"}, "field 'beta': expected float"),
    ({"beta": "-1"}, "field 'beta': beta must be positive"),
    ({"mode": "c"}, "field 'mode': expected one of a, b"),
    ({"lora": "maybe"}, "field 'lora': expected bool"),
    ({"train.seed": 1.5}, "field 'train.seed': expected int"),
])
def test_bad_values_name_the_field(values: dict[str, object], message: str) -> None:
    with pytest.raises(PreflineError) as err:
        config.build(Outer, values, command="x")
    assert message in str(err.value)


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_files_in_every_format_and_override_order(tmp_path: Path, suffix: str) -> None:
    data = {"beta": 0.5, "train": {"lr": 0.01, "seed": 7}}
    path = tmp_path / f"c{suffix}"
    if suffix == ".toml":
        path.write_text("beta = 0.5\n[train]\nlr = 0.01\nseed = 7\n")
    elif suffix == ".yaml":
        path.write_text("beta: 0.5\ntrain:\n  lr: 0.01\n  seed: 7\n")
    else:
        path.write_text(json.dumps(data))
    cfg = config.load(Outer, path, {"seed": "9"})
    assert (cfg.beta, cfg.train.lr, cfg.train.seed) == (0.5, 0.01, 9)


def test_bad_file_is_one_sentence_with_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("beta = = 1\n")
    with pytest.raises(PreflineError, match="bad.toml: not a valid config file"):
        config.load(Outer, bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[train]\nlrr = 1\n")
    with pytest.raises(PreflineError, match=r"unknown.toml, field 'train.lrr': unknown setting"):
        config.load(Outer, unknown)


def test_to_toml_round_trips() -> None:
    cfg = Outer(beta=0.3, heads=("x",), weights={"x": 1.5}, train=Inner(max_steps=4))
    text = config.to_toml(cfg)
    assert "# KL strength." in text and "# max_steps" not in text
    assert config.build(Outer, tomllib.loads(text)) == cfg


def test_derived_command_lists_every_setting_and_merges_sources(tmp_path: Path) -> None:
    app, seen = typer.Typer(), {}
    sub = typer.Typer()
    app.add_typer(sub, name="grp")

    def body(cfg: Outer, ctx: object, *, as_json: bool, path: str) -> None:
        seen.update(cfg=cfg, ctx=ctx, path=path, as_json=as_json)

    positional = inspect.Parameter("path", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                   annotation=Annotated[str, typer.Argument(help="A path.")])
    stage_command("toy", Outer, body, app=sub, command="grp toy", help="Toy stage.",
                  out_help="Run folder.", extra=[positional])
    try:
        runner = CliRunner()
        helptext = runner.invoke(app, ["grp", "toy", "--help"], env={"COLUMNS": "200"}).output
        for s in config.settings(Outer):
            flag = s.name if config.setting_index(Outer).get(s.name) is s else s.key
            assert f"--{flag.replace('_', '-')}" in helptext, flag
        assert "KL strength. (default: 0.1)" in helptext
        cfg_file = tmp_path / "c.toml"
        cfg_file.write_text("beta = 0.2\n[train]\nseed = 5\n")
        res = runner.invoke(app, ["grp", "toy", "P", "--config", str(cfg_file), "--lora",
                                  "--train.lr", "0.5", "heads=a,b", "--out", str(tmp_path),
                                  "--json", "--db", str(tmp_path / "s.db")])
        assert res.exit_code == 0, res.output
        assert seen["cfg"] == Outer(beta=0.2, lora=True, heads=("a", "b"),
                                    train=Inner(lr=0.5, seed=5))
        ctx = seen["ctx"]
        assert seen["path"] == "P" and ctx.seed == 5 and ctx.run_dir == tmp_path  # type: ignore[attr-defined]
        assert ctx.progress.enabled is False  # type: ignore[attr-defined]
    finally:
        STAGE_COMMANDS.pop("toy", None)


@dataclass(frozen=True)
class WithPath:
    path: str
    """Input file."""
    fmt: str = "auto"
    """Format."""


def test_positional_settings_are_arguments() -> None:
    app, seen = typer.Typer(), {}
    sub = typer.Typer()
    app.add_typer(sub, name="grp")
    stage_command("toy2", WithPath, lambda cfg, ctx, as_json: seen.update(cfg=cfg), app=sub,
                  command="grp toy2", help="Toy.", positional=("path",))
    try:
        runner = CliRunner()
        res = runner.invoke(app, ["grp", "toy2", "data.jsonl", "--fmt", "hh"])
        assert res.exit_code == 0, res.output
        assert seen["cfg"] == WithPath(path="data.jsonl", fmt="hh")
        helptext = runner.invoke(app, ["grp", "toy2", "--help"], env={"COLUMNS": "200"}).output
        assert "PATH" in helptext and "Input file." in helptext and "--path" not in helptext
    finally:
        STAGE_COMMANDS.pop("toy2", None)
