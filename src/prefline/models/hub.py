"""Load any causal LM: a Hugging Face id, a local folder, a GGUF file, or the embedded default.

The embedded default (SmolLM2-135M-Instruct) ships as a 4-bit GGUF file. transformers + the
``gguf`` package dequantise it, which takes ~15 s, so we do it once and keep the result as a
plain safetensors folder in the cache (``kind_dir("models")``), keyed by the GGUF file's sha256: a new GGUF
file gets a new folder, and every later load is an ordinary ``from_pretrained`` (~1 s).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from prefline.base.cache import kind_dir
from prefline.base.errors import PreflineError
from prefline.base.hashing import file_sha256


def _resolve_dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise PreflineError(f"unknown dtype {dtype!r}; expected one of {sorted(table)}")
    return table[dtype]


def converted_gguf_dir(gguf_path: str | Path) -> Path:
    """Dequantise ``gguf_path`` once into a safetensors folder in the cache; return that folder.

    Concurrent callers are safe: each converts into a private temp folder and the first
    ``os.replace`` wins; a half-written folder is never visible under the final name.
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise PreflineError("GGUF file not found", path=str(gguf_path))
    target = kind_dir("models") / f"{gguf_path.stem}-{file_sha256(gguf_path)[:16]}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model: Any = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        # The weights are now plain fp32 tensors; the gguf "quantizer" left attached only
        # blocks save_pretrained and would make from_pretrained look for the GGUF file again.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "prefline_source.json").write_text(json.dumps({"gguf": gguf_path.name}))
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first; its folder is equivalent
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def default_policy_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a transformers folder (converted on first use)."""
    from prefline.models.embedded import smollm2_gguf

    return converted_gguf_dir(smollm2_gguf())


def resolve_model_path(name_or_path: str | Path | None) -> str:
    """What ``from_pretrained`` should receive: a local folder or a Hub id.

    ``None`` means the embedded default; a ``.gguf`` file is converted once; a path that
    looks local but does not exist is an error rather than a Hub lookup.
    """
    if name_or_path is None or str(name_or_path) in ("", "default", "embedded"):
        return str(default_policy_dir())
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix == ".gguf":
        return str(converted_gguf_dir(path))
    if path.exists():
        if path.is_dir() and not ((path / "config.json").exists()
                                  or (path / "adapter_config.json").exists()):
            raise PreflineError("folder has no config.json or adapter_config.json; "
                                "expected a transformers model or a peft adapter", path=text)
        return str(path)
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise PreflineError("model folder does not exist", path=text)
    return text  # a Hub id such as "HuggingFaceTB/SmolLM2-135M-Instruct"


def _load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None:  # batching needs a pad id; it is always masked out
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name_or_path: str | Path | None = None, dtype: Any = "float32",
                   merge_adapter: bool = True) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a Hub id, a local folder, a ``.gguf`` file or ``None``.

    ``None`` gives the embedded SmolLM2-135M-Instruct (offline). A peft adapter folder loads
    its base model (recursively through this function) and applies the adapter, merged into
    the weights unless ``merge_adapter=False``. The model is returned in eval mode.
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = _resolve_dtype(dtype)
    source = resolve_model_path(name_or_path)
    adapter_cfg = Path(source) / "adapter_config.json"
    model: Any
    try:
        if adapter_cfg.exists():
            from peft import PeftModel

            base_name = json.loads(adapter_cfg.read_text()).get("base_model_name_or_path")
            base, tok = load_causal_lm(base_name, dtype=torch_dtype)
            if (Path(source) / "tokenizer_config.json").exists():
                tok = _load_tokenizer(source)
            model = PeftModel.from_pretrained(base, source)
            if merge_adapter:
                model = model.merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
            tok = _load_tokenizer(source)
    except (OSError, ValueError) as exc:
        raise PreflineError(f"could not load a causal LM from {source!r} ({exc}); "
                            "pass a local folder, or a Hub id when online") from exc
    model.eval()
    return model, tok
