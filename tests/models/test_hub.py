"""load_causal_lm: local folders, adapters, bad paths, and the embedded default (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prefline.base.errors import PreflineError
from prefline.models.hub import load_causal_lm, resolve_model_path


def test_local_folder_loads_the_saved_weights(tiny_causal_dir: Path) -> None:
    from prefline.models.tiny import tiny_causal_lm

    model, tok = load_causal_lm(str(tiny_causal_dir))
    ref, _ = tiny_causal_lm()
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    assert tok.pad_token is not None and not model.training


def test_bf16_dtype_is_honoured(tiny_causal_dir: Path) -> None:
    model, _ = load_causal_lm(tiny_causal_dir, dtype="bf16")
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("bad", ["./no/such/model", "/definitely/missing", "a/b/c"])
def test_missing_local_path_is_one_clear_error(bad: str) -> None:
    with pytest.raises(PreflineError, match="does not exist"):
        resolve_model_path(bad)


def test_folder_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PreflineError, match="no config.json"):
        load_causal_lm(tmp_path)


def test_peft_adapter_folder_loads_base_plus_adapter(tiny_causal_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base, _ = load_causal_lm(tiny_causal_dir)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # LoRA B starts at zero; make the adapter change something
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    ids = torch.tensor([[5, 6, 7, 8]])
    expected = peft_model(input_ids=ids).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_causal_dir)
    merged, _ = load_causal_lm(tmp_path / "adapter")
    torch.testing.assert_close(merged(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_embedded_default_is_converted_once_and_reused() -> None:
    from prefline.models.hub import default_policy_dir

    model, tok = load_causal_lm(None)
    folder = default_policy_dir()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert not (folder / "config.json").read_text().count("quantization_config")
    again, _ = load_causal_lm(None)
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # not rewritten
    assert model.config.num_hidden_layers == 30 and tok.chat_template
    # Sanity that dequantisation produced a working model: a factual continuation is likely.
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        top = again(input_ids=ids).logits[0, -1].argmax().item()
    assert "Paris" in tok.decode([top])
