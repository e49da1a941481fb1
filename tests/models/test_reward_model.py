"""Reward model: shared-prompt packing == per-response scoring, truncation, save/load, heads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from prefline.base.errors import PreflineError
from prefline.models.backbone import load_backbone, load_tokenizer
from prefline.models.buckets import make_buckets
from prefline.models.reward import VETO, HeadSpec, RewardModel, load_reward_model

PROMPT = [{"role": "user", "content": "How do I boil an egg?"},
          {"role": "assistant", "content": "Do you want it soft or hard?"},
          {"role": "user", "content": "Hard, please."}]
RESPONSES = ["Boil it for ten minutes.", "No.", "Put it in cold water, bring to a boil, wait 9 min.",
             "Eggs are laid by hens."]


@pytest.fixture(params=["encoder-mean", "encoder-cls", "decoder-last"])
def model(request: pytest.FixtureRequest, tiny_encoder_dir: Path,
          tiny_causal_dir: Path) -> RewardModel:
    kind, pooling = request.param.split("-")
    path = tiny_encoder_dir if kind == "encoder" else tiny_causal_dir
    return RewardModel.create(str(path), pooling=pooling, max_length=96).eval()


def test_shared_prompt_packing_equals_per_response_scoring(model: RewardModel) -> None:
    other = [{"role": "user", "content": "Name a colour."}]
    encoded = model.encode(PROMPT, RESPONSES) + model.encode(other, ["Blue.", "Seven."])
    with torch.no_grad():
        batch = model.make_batch(encoded)
        together = model(batch)
        alone = torch.cat([model(model.make_batch([e])) for e in encoded])
    assert_close(together, alone, atol=1e-5, rtol=1e-5)
    if model.spec.pooling != "cls":  # responses to one prompt share one copy of it
        assert batch.n_groups == 2
    assert batch.real_tokens < sum(len(e[0]) for e in encoded) or model.spec.pooling == "cls"


def test_buckets_give_the_same_scores_as_packing(tiny_causal_dir: Path) -> None:
    model = RewardModel.create(str(tiny_causal_dir), max_length=96).eval()
    encoded = model.encode(PROMPT, RESPONSES)
    pad = int(model.tokenizer.pad_token_id)
    with torch.no_grad():
        packed = model(model.make_batch(encoded))
        bucketed = model(make_buckets([e[0] for e in encoded], pad, [e[1] for e in encoded]))
    assert_close(packed, bucketed, atol=1e-5, rtol=1e-5)


def test_left_truncation_keeps_last_turn_and_response(tiny_encoder_dir: Path) -> None:
    model = RewardModel.create(str(tiny_encoder_dir), max_length=64)
    long_prompt = [{"role": "user", "content": "early context " * 40},
                   {"role": "assistant", "content": "ok"}, {"role": "user", "content": "LAST?"}]
    (ids, prompt_len), = model.encode(long_prompt, ["the answer"])
    text = model.tokenizer.decode(ids)
    assert len(ids) == 64
    assert "LAST?" in text and text.rstrip("[SEP]").endswith("the answer")
    assert "early context early context" not in text[:20]
    assert model.builder.counts["prompt_truncated"] == 1
    # A response longer than the budget keeps its beginning and is counted too.
    model.encode(PROMPT, ["word " * 100])
    assert model.builder.counts["response_truncated"] == 1
    assert model.builder.counts["truncated"] == 2


def test_save_load_roundtrip(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    model = RewardModel.create(str(tiny_encoder_dir), max_length=96)
    model.norm_mean, model.norm_std, model.temperature = 0.3, 2.0, 1.7
    before = model.score(PROMPT, RESPONSES)
    model.save(tmp_path / "rm", {"metrics": {"accuracy": 0.5}, "snapshot_hash": "abc"})
    card = json.loads((tmp_path / "rm" / "model_card.json").read_text())
    assert card["normalisation"] == {"mean": 0.3, "std": 2.0} and card["temperature"] == 1.7
    assert card["snapshot_hash"] == "abc" and card["backbone"] == str(tiny_encoder_dir)
    assert (tmp_path / "rm" / "head.safetensors").exists()
    loaded = load_reward_model(tmp_path / "rm")
    assert_close(torch.tensor(loaded.score(PROMPT, RESPONSES)), torch.tensor(before))
    ra, rb = loaded.score(PROMPT, RESPONSES[:2])
    assert loaded.preference_prob(PROMPT, RESPONSES[0], RESPONSES[1]) == pytest.approx(
        1 / (1 + math.exp(-(ra - rb) / 1.7)))


def test_lora_saves_adapter_and_head_only(tiny_causal_dir: Path, tmp_path: Path) -> None:
    model = RewardModel.create(str(tiny_causal_dir), lora={"r": 4, "alpha": 8})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "head.weight" in trainable and all("lora" in n or n.startswith("head") for n in trainable)
    with torch.no_grad():
        model.head.weight.add_(0.5)
    before = model.score(PROMPT, RESPONSES)
    model.save(tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter").is_dir() and not (tmp_path / "lora" / "backbone").exists()
    assert_close(torch.tensor(load_reward_model(tmp_path / "lora").score(PROMPT, RESPONSES)),
                 torch.tensor(before))


def test_guardrail_head_vetoes(tiny_encoder_dir: Path) -> None:
    heads = HeadSpec(("helpful", "harmless"), weights={"helpful": 1.0, "harmless": 0.5},
                     thresholds={"harmless": 0.0})
    model = RewardModel.create(str(tiny_encoder_dir), heads=heads)
    raw = model.head_scores([(PROMPT, r) for r in RESPONSES])
    scores = model.normalised(raw)
    for i in range(len(RESPONSES)):
        expected = VETO if raw[i, 1] < 0 else float(raw[i, 0] + 0.5 * raw[i, 1])
        assert float(scores[i]) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(PreflineError, match="unknown head"):
        HeadSpec(("helpful",), thresholds={"harmless": 0.0})


def test_tokenizer_without_pad_uses_eos_or_fails_clearly(tmp_path: Path) -> None:
    from prefline.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer(pad=False)
    tok.save_pretrained(tmp_path / "eos")
    assert load_tokenizer(str(tmp_path / "eos")).pad_token == "<|endoftext|>"
    tok.eos_token = None
    tok.save_pretrained(tmp_path / "none")
    with pytest.raises(PreflineError, match="neither a pad nor an EOS token"):
        load_tokenizer(str(tmp_path / "none"))


def test_unloadable_backbone_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PreflineError, match="cannot load backbone"):
        load_backbone(str(tmp_path / "missing"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(PreflineError, match="cannot load backbone"):
        RewardModel.create(str(tmp_path / "bad"))
    with pytest.raises(PreflineError, match="not a saved reward model"):
        load_reward_model(tmp_path)


def test_one_loader_for_models_and_ensembles(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    from prefline.models.reward import RewardEnsemble

    members = [RewardModel.create(str(tiny_encoder_dir), seed=s) for s in (0, 1)]
    RewardEnsemble(members, 2.0).save(tmp_path / "ens")
    ens = load_reward_model(tmp_path / "ens")
    assert isinstance(ens, RewardEnsemble) and ens.temperature == 2.0
    mean = ens.score(PROMPT, RESPONSES)
    each = [m.score(PROMPT, RESPONSES) for m in members]
    assert mean == pytest.approx([(a + b) / 2 for a, b in zip(*each, strict=True)], abs=1e-4)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "model_card.json").write_text('{"format": "something-else/1"}')
    with pytest.raises(PreflineError, match="expected prefline-reward/1 or prefline-reward-ens"):
        load_reward_model(tmp_path / "odd")
