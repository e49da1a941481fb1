"""Every file in configs/ parses and validates against the stage it is for."""

from __future__ import annotations

from pathlib import Path

import pytest

import prefline.cli  # noqa: F401  (registers every stage command)
from prefline.base import config
from prefline.cli.options import STAGE_COMMANDS, effective_config
from prefline.demo.config import DemoConfig, quick_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))


def stage_of(path: Path) -> str:
    """configs/<stage>[-variant].toml: the stage is the name before the first dash."""
    return path.stem.split("-")[0]


def test_there_are_shipped_configs() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"demo", "demo-quick", "dpo-lora", "dpo-full", "reward"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path) -> None:
    stage = stage_of(path)
    assert stage in STAGE_COMMANDS, f"{path.name}: no stage named {stage!r}"
    cfg = effective_config(stage, str(path), {})
    assert isinstance(cfg, STAGE_COMMANDS[stage].config_cls)
    # Every key in the file is a real setting (load() would raise otherwise) and round-trips.
    assert config.build(type(cfg), config.to_dict(cfg)) == cfg


def test_demo_files_match_the_code() -> None:
    root = Path(__file__).parents[1] / "configs"
    assert config.load(DemoConfig, root / "demo.toml") == DemoConfig()
    assert config.load(DemoConfig, root / "demo-quick.toml") == quick_config()
