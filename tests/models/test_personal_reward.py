"""Personalised reward models where segments really disagree (issue 14, items 2 and 4).

On the disagreement set (concise users prefer the short answer, detailed users the long
one, the same candidate pairs labelled both ways), a global reward model cannot serve both
segments; per-segment heads and a segment embedding can. Tiny byte-level encoder, held-out
prompts, the real train/eval reward stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.cli_runner import run_cli

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter
from prefline.evaluate import reward as reward_eval
from prefline.evaluate.reward_config import RewardEvalConfig
from prefline.evaluate.reward_segments import table_lines
from prefline.models.reward import load_reward_model, read_card
from prefline.personal.disagree import DisagreeConfig
from prefline.personal.disagree import run as build_disagreement
from prefline.store.context import Context, Store
from prefline.train import reward as reward_train
from prefline.train.reward_config import RewardConfig

MODES = ("none", "heads", "embedding")


def _ctx(tmp: Path, name: str) -> Context:
    return Context(store=Store.open(f"sqlite:///{tmp / 'store.db'}"), run_dir=tmp / name,
                   progress=Reporter(False))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> dict[str, Any]:
    """The disagreement set and three models trained on it: global, heads, embedding."""
    tmp = tmp_path_factory.mktemp("personal")
    data = build_disagreement(DisagreeConfig(out=tmp / "dis", n_prompts=16), _ctx(tmp, "d"))
    paths = {}
    for mode in MODES:
        cfg = config.build(RewardConfig, {
            "data": str(tmp / "dis" / "train.jsonl"), "model": str(tiny_encoder_dir),
            "personal": mode, "segment_key": "style", "test_fraction": 0.0,
            "val_fraction": 0.2, "max_length": 192, "train_embeddings": True,
            "train": {"lr": 1e-2, "epochs": 2, "batch_size": 16, "precision": "fp32",
                      "early_stopping_patience": None}})
        paths[mode] = reward_train.run(cfg, _ctx(tmp, mode)).path
    return {"tmp": tmp, "data": data, "paths": paths}


@pytest.mark.parametrize("mode", ["heads", "embedding"])
def test_personalised_beats_global_on_each_segment(trained: dict[str, Any], mode: str) -> None:
    tmp, paths = trained["tmp"], trained["paths"]
    report = tmp / f"report-{mode}.html"
    cfg = RewardEvalConfig(model=str(paths[mode]), data=str(tmp / "dis" / "heldout.jsonl"),
                           split="all", probes=0, compare=str(paths["none"]),
                           report=str(report))
    result = reward_eval.run(cfg, _ctx(tmp, f"eval-{mode}"))
    assert "<h2>Per segment (style)</h2>" in report.read_text()
    table = result.segments
    assert table is not None and table["key"] == "style"
    assert table["models"] == ["model", "fallback", "global"]
    rows = {r["segment"]: r for r in table["rows"]}
    assert set(rows) == {"concise", "detailed"} and table["suppressed"] is None
    for row in rows.values():
        assert row["n"] >= 8
        assert row["model"]["accuracy"] >= 0.8, table_lines(table)
        # the global model knows it cannot please both: its calibrated P is near 1/2
        assert abs(row["global"]["expected_accuracy"] - 0.5) <= 0.1, table_lines(table)
        lo, hi = row["model"]["accuracy_ci"]
        assert lo <= row["model"]["accuracy"] <= hi
    # each held-out pair is labelled both ways: the global model's hard accuracies on the two
    # segments add up to 1 (it is at 50% over both; its residual bias decides the split)
    total = sum(r["global"]["accuracy"] for r in rows.values())
    assert total == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("mode", ["heads", "embedding"])
def test_saved_model_scores_with_a_segment_and_falls_back_without(
        trained: dict[str, Any], mode: str) -> None:
    model = load_reward_model(trained["paths"][mode])
    card = read_card(trained["paths"][mode])
    assert card["spec"]["personal"]["groups"] == ["concise", "detailed"]
    assert card["hf_export"]["path"] is None  # a stock classifier has no segment input
    pair = next(p for p in trained["data"].heldout if p.segment["style"] == "concise")
    short, long = pair.chosen, pair.rejected
    concise = model.score(pair.prompt, [short, long], segment={"style": "concise"})
    detailed = model.score(pair.prompt, [short, long], segment={"style": "detailed"})
    assert concise[0] > concise[1] and detailed[1] > detailed[0]
    fallback = model.score(pair.prompt, [short, long])
    assert model.score(pair.prompt, [short, long], segment={"style": "legal"}) == fallback
    assert model.score(pair.prompt, [short, long], segment={"other": "x"}) == fallback


def test_small_groups_are_suppressed(trained: dict[str, Any]) -> None:
    tmp, paths = trained["tmp"], trained["paths"]
    cfg = RewardEvalConfig(model=str(paths["heads"]), data=str(tmp / "dis" / "heldout.jsonl"),
                           split="all", probes=0, min_group_size=10_000)
    table = reward_eval.run(cfg, _ctx(tmp, "eval-k")).segments
    assert table is not None and table["rows"] == []
    assert table["suppressed"] == "2 groups suppressed (n < 10000)"
    # a global model gets the table only when asked, with its key
    plain = reward_eval.run(RewardEvalConfig(model=str(paths["none"]), split="all", probes=0,
                                             data=str(tmp / "dis" / "heldout.jsonl")),
                            _ctx(tmp, "eval-plain"))
    assert plain.segments is None


def test_personal_settings_are_checked() -> None:
    with pytest.raises(PreflineError) as err:
        config.build(RewardConfig, {"data": "x.jsonl", "personal": "heads", "ensemble": 2})
    assert err.value.field == "ensemble"
    with pytest.raises(PreflineError) as err:
        config.build(RewardConfig, {"data": "x.jsonl", "fallback_drop": 1.0})
    assert err.value.field == "fallback_drop"


def test_user_key_conditions_on_user_ids_with_enough_examples() -> None:
    """--segment-key user: each user with >= min_group_size pairs gets a group; the rest
    (and pairs with no user) use the fallback and go unnamed."""
    from prefline.formats.examples import PreferencePair
    from prefline.train.reward import personal_spec

    pairs = [PreferencePair([{"role": "user", "content": f"q{i}"}], "a", "b",
                            user="u-big" if i < 6 else "u-small" if i < 8 else None)
             for i in range(10)]
    cfg = config.build(RewardConfig, {"data": "x.jsonl", "personal": "embedding",
                                      "segment_key": "user", "min_group_size": 5})
    spec, note = personal_spec(cfg, pairs)
    assert spec is not None and spec.groups == ("u-big",)
    assert note == "1 group suppressed (n < 5)"
    assert spec.index([spec.value_of({}, "u-big"), spec.value_of({"user": "x"}, "u-small"),
                       spec.value_of({}, None)]).tolist() == [1, 0, 0]


def test_eval_cli_prints_the_table(trained: dict[str, Any],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    tmp, paths = trained["tmp"], trained["paths"]
    code, out, err = run_cli(["eval", "reward", "--model", str(paths["heads"]), "--data",
                              str(tmp / "dis" / "heldout.jsonl"), "--split", "all",
                              "--probes", "0", "--compare", str(paths["none"]),
                              "--db", f"sqlite:///{tmp / 'cli.db'}",
                              "--out", str(tmp / "eval-cli")], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert any(ln.startswith("style") and "global acc" in ln for ln in lines)
    assert sum(ln.startswith(("concise ", "detailed ")) for ln in lines) == 2
