"""Reward losses against hand-worked numbers and against TRL's RewardTrainer.compute_loss."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.testing import assert_close

from prefline.losses.reward import (
    LOSSES,
    bradley_terry,
    davidson,
    ordinal_logistic,
    plackett_luce,
    rao_kupper,
    rating_mse,
    reward_centering,
)

LN2, LN3 = math.log(2), math.log(3)


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_bradley_terry_hand_values() -> None:
    # Δ = 0 → ln 2; Δ = 1 → -log σ(1) = log(1 + e^-1) = 0.313262; Δ = -1 → 1.313262
    assert_close(bradley_terry(t(0.0, 1.0, 0.0), t(0.0, 0.0, 1.0)),
                 t(LN2, 0.31326169, 1.31326169))


def test_bradley_terry_margin_and_smoothing() -> None:
    # Δ = 1 with margin 1 is an even bet again: ln 2.
    assert_close(bradley_terry(t(1.0), t(0.0), margin=t(1.0)), t(LN2))
    # 0.9 · 0.313262 + 0.1 · 1.313262 = 0.413262
    assert_close(bradley_terry(t(1.0), t(0.0), label_smoothing=0.1), t(0.41326169))
    with pytest.raises(ValueError):
        bradley_terry(t(1.0), t(0.0), label_smoothing=0.5)


def test_reward_centering_hand_values() -> None:
    # coef · (r_c + r_r)²: 0.01 · (1 + 2)² = 0.09
    assert_close(reward_centering(t(1.0), t(2.0), 0.01), t(0.09))


def test_davidson_three_way_even_at_zero() -> None:
    # Δ = 0, ν = 1: win, loss and tie each have probability 1/3.
    assert_close(davidson(t(0.0, 0.0), t(0.0, 0.0), torch.tensor([False, True])), t(LN3, LN3))
    # A large Δ makes a tie unlikely and a win near-certain.
    win, tie = davidson(t(10.0, 10.0), t(0.0, 0.0), torch.tensor([False, True]))
    assert float(win) < 0.01 and float(tie) > 4.0


def test_rao_kupper_hand_values() -> None:
    # log θ = ln 3, Δ = 0: P(win) = σ(-ln 3) = 1/4, P(tie) = 1/2.
    out = rao_kupper(t(0.0, 0.0), t(0.0, 0.0), torch.tensor([False, True]), log_theta=LN3)
    assert_close(out, t(math.log(4), LN2))


def test_plackett_luce_hand_values_and_bt_reduction() -> None:
    assert_close(plackett_luce(t(0.0, 0.0, 0.0).unsqueeze(0)), t(math.log(6)))
    s = t(0.7, -0.4)
    assert_close(plackett_luce(s.unsqueeze(0)), bradley_terry(s[:1], s[1:]))
    # A 3-way row padded to 4 equals the unpadded row.
    padded = plackett_luce(t(1.0, 0.0, -1.0, 5.0).unsqueeze(0),
                           torch.tensor([[True, True, True, False]]))
    assert_close(padded, plackett_luce(t(1.0, 0.0, -1.0).unsqueeze(0)))


def test_rating_losses_hand_values() -> None:
    assert_close(rating_mse(t(1.0, -1.0), t(0.5, 1.0)), t(0.25, 4.0))
    # K = 2, θ = [0], r = 0: both classes have probability 1/2.
    assert_close(ordinal_logistic(t(0.0, 0.0), torch.tensor([0, 1]), t(0.0)), t(LN2, LN2))
    # r far above every threshold: the top class is near-certain.
    assert float(ordinal_logistic(t(20.0), torch.tensor([2]), t(-1.0, 1.0))) < 1e-6


def test_registry_names_every_loss() -> None:
    assert {"bradley_terry", "davidson", "rao_kupper", "plackett_luce", "rating_mse",
            "ordinal_logistic", "reward_centering"} <= set(LOSSES)
    assert all(callable(f) for f in LOSSES.values())


# ----- TRL as an oracle ---------------------------------------------------------------------
class FixedScores(torch.nn.Module):
    """Stands in for a sequence-classification model: returns preset rewards as logits."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, **_: Any) -> SimpleNamespace:
        return SimpleNamespace(logits=self.scores.unsqueeze(-1))


@pytest.fixture(scope="module")
def trl_trainer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real TRL RewardTrainer (tiny Llama classifier) whose compute_loss we call."""
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from prefline.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      pad_token_id=tok.pad_token_id, num_labels=1)
    out: Path = tmp_path_factory.mktemp("trl")
    args = RewardConfig(output_dir=str(out), center_rewards_coefficient=0.01, report_to=[],
                        bf16=False, use_cpu=True)
    return RewardTrainer(model=LlamaForSequenceClassification(cfg), args=args,
                         train_dataset=Dataset.from_list([{"chosen": "a", "rejected": "b"}]),
                         processing_class=tok)


@pytest.mark.parametrize("with_margin", [False, True])
def test_matches_trl_reward_loss(trl_trainer: Any, with_margin: bool) -> None:
    chosen = torch.tensor([1.0, 0.5, -2.0, 3.0])
    rejected = torch.tensor([0.0, 1.0, -1.0, 2.5])
    margin = torch.tensor([0.5, 0.0, 1.0, 0.2])
    inputs: dict[str, Any] = {"input_ids": torch.zeros(8, 2, dtype=torch.long),
                              "attention_mask": torch.ones(8, 2, dtype=torch.long)}
    if with_margin:
        inputs["margin"] = margin
    theirs = trl_trainer.compute_loss(FixedScores(torch.cat([chosen, rejected])), inputs)
    ours = (bradley_terry(chosen, rejected, margin if with_margin else None)
            + reward_centering(chosen, rejected, 0.01)).mean()
    assert_close(ours, theirs)
