"""DP-SGD reward training through Opacus (issue 14, item 9): a tiny model trains to a target
ε, the accountant's ε is within it, and the model card records ε and δ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter
from prefline.models.reward import load_reward_model, read_card
from prefline.store.context import Context, Store
from prefline.train import reward as reward_train
from prefline.train.reward_config import RewardConfig


def _data(path: Path, n: int = 80) -> Path:
    rows = [{"prompt": f"question {i}?", "chosen": "a careful, complete answer " * 2,
             "rejected": "no", "segment": {"style": "concise" if i % 2 else "detailed"},
             "user": f"u{i % 7}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("personal", ["none", "heads", "embedding"])
def test_dp_training_reports_epsilon_within_target(tmp_path: Path, tiny_encoder_dir: Path,
                                                   personal: str) -> None:
    cfg = config.build(RewardConfig, {
        "data": str(_data(tmp_path / "pairs.jsonl")), "model": str(tiny_encoder_dir),
        "max_length": 64, "personal": personal, "dp_epsilon": 3.0, "dp_delta": 1e-4,
        "dp_max_grad_norm": 1.0, "train": {"lr": 0.05, "epochs": 3, "batch_size": 16}})
    ctx = Context(store=Store.open(f"sqlite:///{tmp_path / 's.db'}"), run_dir=tmp_path / "run",
                  progress=Reporter(False))
    before = {k: v.clone() for k, v in reward_train._new_model(cfg, 0, None).backbone
              .state_dict().items()}
    result = reward_train.run(cfg, ctx)
    dp = read_card(result.path)["differential_privacy"]
    assert 0 < dp["epsilon"] <= 3.0 and dp["delta"] == 1e-4 and dp["target_epsilon"] == 3.0
    assert dp["poisson_sampling"] is True and dp["noise_multiplier"] > 0
    assert dp["steps"] > 0 and "frozen" in dp["scope"]
    model = load_reward_model(result.path)
    # the backbone is the public pretrained one, untouched; the private part is the heads
    after = model.backbone.state_dict()
    assert all(bool((after[k] == v).all()) for k, v in before.items())
    assert model.norm_mean == 0.0 and model.norm_std == 1.0 and model.temperature == 1.0
    # learned from the data under the noise: the long answer wins
    good, bad = model.score("question 999?", ["a careful, complete answer " * 2, "no"])
    assert good > bad


def test_dp_settings_are_checked() -> None:
    for values, name in (({"dp_epsilon": 0.0}, "dp_epsilon"), ({"dp_delta": 1.0}, "dp_delta"),
                         ({"dp_epsilon": 1.0, "ensemble": 2}, "ensemble"),
                         ({"dp_epsilon": 1.0, "lora": True}, "lora")):
        with pytest.raises(PreflineError) as err:
            config.build(RewardConfig, {"data": "x.jsonl", **values})
        assert err.value.field == name
