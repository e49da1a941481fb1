"""``rm-hh``: a reward model trained by prefline on HH-format human preference data, built on
first use into the cache (keyed by data + recipe), reused after, its recipe recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter
from prefline.evaluate import policy_judges
from prefline.evaluate.policy_judges import HH_ENV, build_hh_reward_model, hh_data
from prefline.judges.reward_model import RewardModelJudge
from prefline.store.context import Context, Store

TOPICS = ["cats", "rain", "bread", "chess", "tea", "maps", "bees", "jazz", "snow", "kites",
          "clocks", "ferns", "owls", "salt", "tides", "yarn", "moss", "figs", "glue", "harps"]


def write_hh(path: Path) -> Path:
    """HH transcripts (``chosen``/``rejected`` differ only in the last assistant turn): the
    chosen answer is polite and on topic, the rejected one rude."""
    lines = []
    for i, topic in enumerate(TOPICS * 2):
        head = f"\n\nHuman: Tell me something about {topic}, please ({i}).\n\nAssistant:"
        lines.append(json.dumps({"chosen": f"{head} Here is a kind fact about {topic}.",
                                 "rejected": f"{head} Go away, {topic} are stupid."}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_builds_once_then_reuses_and_records_its_recipe(tmp_path: Path, sqlite_url: str,
                                                        tiny_encoder_dir: Path) -> None:
    data = write_hh(tmp_path / "hh.jsonl")
    ctx = Context(store=Store.open(sqlite_url), progress=Reporter(enabled=False))
    model = build_hh_reward_model(data, ctx, backbone=str(tiny_encoder_dir))
    recipe = json.loads((model.parent / "recipe.json").read_text())
    assert recipe["config"]["train"]["seed"] == policy_judges.HH_SEED
    assert recipe["data_sha256"] and recipe["splits"]["test"] > 0 and "metrics" in recipe
    assert recipe["heldout"]["n_pairs"] == recipe["splits"]["test"]
    assert 0.0 <= recipe["heldout"]["accuracy"] <= 1.0 and len(recipe["heldout"]["accuracy_ci"]) == 2
    stamp = (model.parent / "recipe.json").stat().st_mtime_ns
    assert build_hh_reward_model(data, ctx, backbone=str(tiny_encoder_dir)) == model
    assert (model.parent / "recipe.json").stat().st_mtime_ns == stamp  # reused, not retrained
    judge = RewardModelJudge(model, provenance={"key": recipe["key"]})
    assert judge.config()["provenance"] == {"key": recipe["key"]}
    assert judge.judge("Tell me about owls.", "Owls hunt at night.", "Owls hunt at night.").choice == "tie"
    data.write_text(data.read_text().replace("kind", "nice"))  # other data: another model
    assert build_hh_reward_model(data, ctx, backbone=str(tiny_encoder_dir)) != model


def test_the_data_comes_from_the_spec_or_the_environment(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_hh(tmp_path / "hh.jsonl")
    assert hh_data(str(data)) == data.resolve()
    monkeypatch.setenv(HH_ENV, str(data))
    assert hh_data("") == data.resolve()
    monkeypatch.delenv(HH_ENV)
    with pytest.raises(PreflineError, match=f"pass rm-hh:FILE or set {HH_ENV}"):
        hh_data("")
    with pytest.raises(PreflineError, match="HH data file does not exist"):
        hh_data(str(tmp_path / "nope.jsonl"))
