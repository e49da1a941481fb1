"""Reward models as standard Hugging Face sequence classifiers (artifacts other tools load).

:meth:`RewardModel.save` writes ``<model>/hf/`` next to prefline's own
files, a folder ``AutoModelForSequenceClassification.from_pretrained`` loads:

- label 0 (``"reward"``) is prefline's normalised score, what ``score()`` returns: the heads,
  their weights and the normalisation are one linear map of the pooled vector, so they fold
  into the classifier, ``W0 = Σ_h w_h W_h / std`` and ``b0 = (Σ_h w_h b_h − mean) / std``.
  With several heads (or guardrail thresholds) labels 1..H are each head's raw score, named
  in ``id2label``; a veto (a head below its threshold) is not applied by the classifier.
- ``config.json`` ``prefline`` holds the temperature (P(a ≻ b) = σ((r_a − r_b) / T)), the
  thresholds, the normalisation, how inputs are built and ``logit_offset``: a constant per
  label to add to the logits (all zero except for decoders, whose stock classifier has no
  bias).
- The route depends on the pooling. ``pooling=pooler`` (encoders: the pooler on [CLS]) and
  ``pooling=last`` (decoders, whose causal mask makes prompt sharing exact) export as the
  stock ``<Arch>ForSequenceClassification``: no custom code, so vLLM and TRL load them too.
  Mean or cls pooling over an encoder (prefline's default) has no stock equivalent, and
  prefline lets prompt tokens attend to the prompt only; those export with
  :mod:`prefline.models.hf_reward_modeling` copied in as remote code
  (``trust_remote_code=True``), which rebuilds that mask from ``token_type_ids``.

Every export is loaded back right after writing and compared with prefline on probe pairs
(fp32); one that differs by more than :data:`TOLERANCE` is removed and the model card says why,
so no folder that gives other scores is ever left behind.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from prefline.base.errors import PreflineError
from prefline.formats.examples import Messages, as_messages, prompt_text
from prefline.models import hf_reward_modeling

if TYPE_CHECKING:
    from prefline.models.reward import RewardModel

HF_DIR = "hf"
EXPORT_FORMAT = "prefline-reward-hf/1"
REMOTE_FILE = "modeling_prefline_reward.py"
TOLERANCE = 1e-4
"""Largest |prefline − export| allowed on the probe pairs (fp32 on both sides)."""
PROBES: list[tuple[Messages | str, str]] = [
    ("How do I boil an egg?", "Boil it for nine minutes, then cool it in cold water."),
    ("How do I boil an egg?", "No."),
    ([{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
      {"role": "user", "content": "Another?"}], "Green, the colour of grass."),
]


class _NoExport(Exception):
    """Why a model has no faithful export: recorded in its card, never raised to the user."""


def export_reward(model: RewardModel, folder: Path) -> dict[str, Any]:
    """Write ``folder/hf`` (see the module docstring), check it, return the card entry:
    ``{"path": "hf", "class", "trust_remote_code", "labels", "max_abs_diff", ...}``, or
    ``{"path": None, "why": ...}`` when this model has no faithful export."""
    target = folder / HF_DIR
    shutil.rmtree(target, ignore_errors=True)
    labels, stock = _labels(model), model.spec.pooling in ("pooler", "last")
    try:
        _check_supported(model)
        name = (_write_stock if stock else _write_remote)(model, labels, target)
        _export_tokenizer(model, target)
        diff = check_export(model, target)
        if not diff <= TOLERANCE:  # also catches NaN
            raise _NoExport(f"the exported classifier differed from prefline by {diff:.2g} on "
                            f"probe pairs (tolerance {TOLERANCE})")
    except _NoExport as exc:
        shutil.rmtree(target, ignore_errors=True)
        return {"path": None, "why": str(exc)}
    except Exception as exc:  # noqa: BLE001 - an exotic backbone must not lose a trained model
        shutil.rmtree(target, ignore_errors=True)
        return {"path": None, "why": f"export failed: {type(exc).__name__}: {exc}"}
    return {"path": HF_DIR, "format": EXPORT_FORMAT, "labels": labels, "class": name,
            "trust_remote_code": not stock, "max_abs_diff": diff}


def _check_supported(model: RewardModel) -> None:
    spec = model.spec
    if spec.kind == "decoder":
        if spec.pooling != "last":
            raise _NoExport(f"a decoder pooled by {spec.pooling!r} has no sequence-classifier "
                            "form; train it with pooling=last")
        tok = model.tokenizer
        if tok.pad_token_id == tok.eos_token_id:
            raise _NoExport("the tokenizer pads with its EOS token, which prefline appends to "
                            "every response, so a stock classifier would score the token "
                            "before it; give the backbone's tokenizer its own pad token")


def _labels(model: RewardModel) -> list[str]:
    heads = model.spec.heads
    return ["reward", *heads.names] if len(heads.names) > 1 or heads.thresholds else ["reward"]


def _folded_head(model: RewardModel, labels: Sequence[str]) -> tuple[Tensor, Tensor]:
    """``(weight [L, D], bias [L])``: row 0 the normalised combined score, then raw heads."""
    w = model.head.weight.detach().double().cpu()
    b = model.head.bias.detach().double().cpu()
    mix = model.weights.detach().double().cpu()
    rows = [(mix @ w) / model.norm_std]
    bias = [(mix @ b - model.norm_mean) / model.norm_std]
    if len(labels) > 1:
        rows += list(w)
        bias += list(b)
    return torch.stack(rows).float(), torch.stack(bias).float()


def _backbone_state(model: RewardModel) -> dict[str, Tensor]:
    """Backbone weights on the CPU, LoRA merged in (on a copy: the live model is untouched)."""
    backbone: Any = model.backbone
    if model.spec.lora:
        backbone = copy.deepcopy(backbone).merge_and_unload()
    return {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}


def _base_config(model: RewardModel, labels: Sequence[str]) -> Any:
    base: Any = model.backbone.get_base_model() if model.spec.lora else model.backbone
    config = copy.deepcopy(base.config)
    config.num_labels = len(labels)
    config.problem_type = "regression"
    config.pad_token_id = model.tokenizer.pad_token_id
    return config


def _write_stock(model: RewardModel, labels: list[str], target: Path) -> str:
    """Save the stock ``<Arch>ForSequenceClassification`` with prefline's weights."""
    import transformers
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as NAMES,
    )

    config = _base_config(model, labels)
    name = NAMES.get(config.model_type)
    if name is None or not hasattr(transformers, name):
        raise _NoExport(f"transformers has no sequence classifier for {config.model_type!r}")
    config.architectures = [name]
    hf = getattr(transformers, name)(config)
    state = _backbone_state(model)
    body = getattr(hf, hf.base_model_prefix)
    body.load_state_dict({k: v for k, v in state.items() if k in body.state_dict()})
    head: Any = getattr(hf, "score", None) if model.spec.kind == "decoder" else hf.classifier
    if model.spec.kind == "encoder" and hasattr(head, "out_proj"):  # RoBERTa-style head
        head.dense.load_state_dict({k[len("pooler.dense."):]: v for k, v in state.items()
                                    if k.startswith("pooler.dense.")})
        head = head.out_proj
    if not isinstance(head, nn.Linear):
        raise _NoExport(f"{name} has no single linear classifier to carry the reward heads")
    weight, bias = _folded_head(model, labels)
    with torch.no_grad():
        head.weight.copy_(weight)
        if head.bias is not None:
            head.bias.copy_(bias)
    # a bias-free head (decoders) leaves the constants to config.json's logit_offset
    offset = [0.0] * len(labels) if head.bias is not None else bias.tolist()
    hf.config.update(_config_entries(model, labels, offset, stock=True))
    hf.save_pretrained(target)
    return name


def _write_remote(model: RewardModel, labels: list[str], target: Path) -> str:
    """Save config, weights and :mod:`hf_reward_modeling` as remote code. The weights are
    written directly (``<backbone prefix>.*`` + ``score.*``), as the class would save them."""
    import transformers
    from safetensors.torch import save_file
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    config = _base_config(model, labels)
    base_name = MODEL_MAPPING_NAMES[config.model_type]  # a name, or several (the first)
    base_name = base_name if isinstance(base_name, str) else base_name[0]
    prefix = getattr(transformers, base_name).base_model_prefix
    config.architectures = ["PreflineRewardModel"]
    config.auto_map = {"AutoModelForSequenceClassification":
                       f"{REMOTE_FILE[:-3]}.PreflineRewardModel"}
    config.prefline_pooling = model.spec.pooling
    config.prefline_isolate_prompt = model.isolates_prompt
    config.update(_config_entries(model, labels, [0.0] * len(labels), stock=False))
    config.save_pretrained(target)
    weight, bias = _folded_head(model, labels)
    state = {f"{prefix}.{k}": v for k, v in _backbone_state(model).items()}
    state.update({"score.weight": weight, "score.bias": bias})
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    source = Path(hf_reward_modeling.__file__).read_text()
    source = source.replace('CONFIG_CLASS = "BertConfig"',
                            f'CONFIG_CLASS = "{type(config).__name__}"')
    (target / REMOTE_FILE).write_text(
        source.replace('BACKBONE_PREFIX = "bert"', f'BACKBONE_PREFIX = "{prefix}"'))
    return "PreflineRewardModel (remote code)"


def _config_entries(model: RewardModel, labels: list[str], offset: list[float],
                    stock: bool) -> dict[str, Any]:
    labels_map = dict(enumerate(labels))
    inputs = ("the tokenizer's (prompt transcript, response) pair; the transcript of a chat "
              "is 'Role: content' lines, a single user turn is its text"
              if model.spec.kind == "encoder" else
              "the chat-templated prompt (add_generation_prompt=True), then the response "
              "tokens (no special tokens), then the EOS token")
    extra = {}
    if model.spec.kind == "encoder":
        # read by sentence-transformers' CrossEncoder and vLLM's cross-encoder scoring: the
        # raw reward, not the sigmoid they apply to a one-label classifier by default
        extra["sbert_ce_default_activation_function"] = "torch.nn.modules.linear.Identity"
    return {**extra, "id2label": labels_map, "label2id": {v: k for k, v in labels_map.items()},
            "prefline": {
                "format": EXPORT_FORMAT, "labels": labels, "logit_offset": offset,
                "temperature": model.temperature,
                "normalisation": {"mean": model.norm_mean, "std": model.norm_std},
                "head_weights": dict(zip(model.spec.heads.names, model.weights.tolist(),
                                             strict=True)),
                "thresholds": dict(model.spec.heads.thresholds), "input": inputs,
                "max_length": model.spec.max_length, "pooling": model.spec.pooling,
                "stock_class": stock}}


def _export_tokenizer(model: RewardModel, target: Path) -> None:
    """The tokenizer, made to build prefline's inputs: for encoders ``tok(prompt, response)``
    gives prefline's ids and segments, left truncation, ``max_length`` as its limit."""
    tok = copy.deepcopy(model.tokenizer)
    tok.model_max_length = model.spec.max_length
    tok.truncation_side = tok.init_kwargs["truncation_side"] = "left"
    if model.spec.kind == "encoder":
        names = ["input_ids", "token_type_ids", "attention_mask"]
        tok.model_input_names = tok.init_kwargs["model_input_names"] = names
        _set_pair_template(model, tok)
    tok.save_pretrained(target)


def _set_pair_template(model: RewardModel, tok: Any) -> None:
    """Make ``tok(a, b)`` lay out ``prefix a middle b suffix`` as prefline's builder does,
    when the tokenizer's own template differs (e.g. a byte tokenizer without one)."""
    b = model.builder
    prompt, response = b.prompt_ids(as_messages("a b")), b.response_ids("c")
    if tok("a b", "c")["input_ids"] == b.build(prompt, response)[0]:
        return
    backend = getattr(tok, "_tokenizer", None)
    if backend is None:
        raise PreflineError(f"cannot give the tokenizer of {model.spec.backbone!r} prefline's "
                            "(prompt, response) layout: it is not a fast tokenizer")
    from tokenizers.processors import TemplateProcessing

    def names(ids: list[int], type_id: int) -> list[str]:
        return [f"{t}:{type_id}" for t in tok.convert_ids_to_tokens(ids)]

    specials = sorted({(t, i) for ids in (b.prefix, b.middle, b.suffix)
                       for t, i in zip(tok.convert_ids_to_tokens(ids), ids, strict=True)})
    single = [*names(b.prefix, 0), "$A:0", *names(b.suffix, 0)]
    pair = [*names(b.prefix, 0), "$A:0", *names(b.middle, 0), "$B:1", *names(b.suffix, 1)]
    backend.post_processor = TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def hf_inputs(tokenizer: Any, kind: str, items: Sequence[tuple[Messages | str, str]]) -> Any:
    """Batched inputs of (prompt, response) items for an export, built as its config says."""
    if kind == "encoder":
        return tokenizer([prompt_text(as_messages(p)) for p, _ in items], [r for _, r in items],
                         padding=True, truncation="only_first", return_tensors="pt")
    rows = []
    for prompt, response in items:
        messages = as_messages(prompt)
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                tokenize=True)
            ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        else:  # prefline's plain transcript for decoders without a chat template
            ids = tokenizer(prompt_text(messages) + "\nAssistant: ",
                            add_special_tokens=False)["input_ids"]
        rows.append(ids + tokenizer(response, add_special_tokens=False)["input_ids"]
                    + [tokenizer.eos_token_id])
    return tokenizer.pad({"input_ids": rows}, return_tensors="pt")


def _probes(model: RewardModel) -> list[tuple[Messages | str, str]]:
    """:data:`PROBES`, halved until each fits ``max_length`` untruncated (truncation is where
    a tokenizer may cut differently from prefline; see the docs); ones that never fit drop."""
    counts = model.builder.counts
    saved = dict(counts)  # the card reports truncation in training; probing must not add
    out: list[tuple[Messages | str, str]] = []
    try:
        for prompt, response in PROBES:
            messages = as_messages(prompt)
            for _ in range(8):
                before = counts["truncated"]
                model.encode(messages, [response])
                if counts["truncated"] == before:
                    out.append((messages, response))
                    break
                messages = [{**m, "content": m["content"][len(m["content"]) // 2:]}
                            for m in messages]
                response = response[: max(1, len(response) // 2)]
    finally:
        counts.clear()
        counts.update(saved)
    if not out:
        raise PreflineError(f"max_length {model.spec.max_length} is too small to check an "
                            "export on probe pairs", field="max_length")
    return out


def check_export(model: RewardModel, target: Path) -> float:
    """Largest |prefline − export| over :data:`PROBES` and every label, both in fp32."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    remote = (target / REMOTE_FILE).exists()
    hf = AutoModelForSequenceClassification.from_pretrained(
        target, trust_remote_code=remote, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(target)
    with torch.no_grad():
        probes = _probes(model)
        logits = hf(**hf_inputs(tok, model.spec.kind, probes)).logits.double()
    logits = logits + torch.tensor(hf.config.prefline["logit_offset"], dtype=torch.float64)
    before, training = model.precision, model.training
    model.precision = "fp32"
    try:
        heads = model.head_scores(probes).double().cpu()
    finally:  # saving mid-run must leave the model as it was
        model.precision = before
        model.train(training)
    mix = model.weights.detach().double().cpu()
    z = (heads @ mix - model.norm_mean) / model.norm_std
    expected = torch.cat([z.unsqueeze(1), heads], 1) if logits.size(1) > 1 else z.unsqueeze(1)
    return float((logits - expected).abs().max())
