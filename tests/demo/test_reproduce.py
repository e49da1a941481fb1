"""``summary.json``'s reproducibility record and the differences ``--reproduce`` prints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.demo.config import DemoConfig, quick_config
from prefline.demo.reproduce import differences, provenance, recorded_config, render


def test_the_record_rebuilds_the_same_configuration(tmp_path: Path) -> None:
    cfg = dataclasses.replace(quick_config(), seed=7, eval_split="dev")
    record = provenance(cfg)
    assert record["seeds"] == {"demo": 7, "reward": cfg.reward.train.seed,
                               "dpo": cfg.dpo.train.seed, "evaluate": cfg.evaluate.seed,
                               "overopt": cfg.overopt_seed}
    assert "+" in record["code_version"] and record["code_dirty"] == (".dirty" in record["code_version"])
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"judge_win_rate": 0.5, **record}))
    summary, again = recorded_config(path)
    assert again == cfg and provenance(again)["config_hash"] == record["config_hash"]


def test_differences_name_figures_and_settings() -> None:
    cfg = quick_config()
    old = {"judge": "rubric", "judge_win_rate": 0.61, "kl": 1.0, "stages_seconds": {"dpo": 3},
           **provenance(cfg)}
    new = {**old, "judge_win_rate": 0.58, "stages_seconds": {"dpo": 9},
           "code_version": "0.1.0+abc.dirty-123",
           **{k: v for k, v in provenance(dataclasses.replace(cfg, seed=3)).items()
              if k != "code_version"}}
    diffs = {d.key: d for d in differences(old, new)}
    assert set(diffs) == {"judge_win_rate", "code_version", "config_hash", "seeds.demo",
                          "config.seed"}  # timings are not results
    assert diffs["judge_win_rate"].kind == "figure" and diffs["seeds.demo"].kind == "setting"
    assert "figure  judge_win_rate: 0.6100 → 0.5800" in render(list(diffs.values()))
    assert render([]) == ["reproduced: every figure and setting equals the recorded run"]


def test_a_summary_without_a_config_is_one_sentence(tmp_path: Path) -> None:
    old = tmp_path / "summary.json"
    old.write_text(json.dumps({"judge_win_rate": 0.7}))
    with pytest.raises(PreflineError, match="no recorded configuration"):
        recorded_config(old)
    old.write_text(json.dumps({"config": {**config.to_dict(DemoConfig()), "nope": 1}}))
    with pytest.raises(PreflineError) as err:
        recorded_config(old)
    assert err.value.path == str(old) and "nope" in str(err.value)
