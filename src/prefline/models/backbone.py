"""Load any Hugging Face backbone for scoring: encoder (pooled) or decoder (last real token).

Also builds model inputs from (chat prompt, response) with LEFT truncation of the prompt, so
the last turns and the response survive a length limit, and counts every truncation.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from prefline.base.errors import PreflineError
from prefline.formats.examples import Messages, prompt_text
from prefline.models.embedded import minilm_dir

# Bidirectional encoders; anything else is treated as a decoder and pooled at its last token.
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta",
                 "deberta-v2", "mpnet", "albert", "modernbert", "camembert", "nomic_bert"}


def resolve_backbone(name: str | Path | None) -> str:
    """The backbone to load: ``name`` or the embedded all-MiniLM-L6-v2 folder."""
    if name:
        return str(name)
    return str(minilm_dir())


def backbone_kind(config: Any) -> str:
    """'encoder' or 'decoder' from a transformers config."""
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith("ForCausalLM") for a in archs):
        return "decoder"
    return "encoder" if config.model_type in ENCODER_TYPES else "decoder"


def load_tokenizer(name: str) -> Any:
    """Tokenizer with a pad token: the tokenizer's own, else its EOS, else a clear error."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # transformers raises OSError/ValueError/KeyError variously
        raise PreflineError(f"cannot load a tokenizer from {name!r}: {_first_line(exc)}") from exc
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise PreflineError(
                f"the tokenizer of {name!r} has neither a pad nor an EOS token, so batches "
                "cannot be padded; add a pad token to the tokenizer and save it again")
        # Padding positions are never attended to or pooled, so EOS is a safe stand-in.
        tok.pad_token = tok.eos_token
    return tok


def load_backbone(name: str, dropout: float | None = None, strict: bool = False,
                  attention_dropout: float | None = None) -> tuple[Any, Any, str]:
    """``(model without LM head, tokenizer, kind)``; PreflineError if it cannot be loaded.

    ``dropout`` overrides the backbone's hidden/attention dropout when given;
    ``attention_dropout`` then overrides the attention-probability dropout alone. ``strict``
    (loading a trained model's backbone out of its classifier export): every backbone weight
    must be in the checkpoint, and the classifier's own weights are skipped without a report.
    """
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as exc:
        raise PreflineError(f"cannot load backbone {name!r}: {_first_line(exc)}") from exc
    if dropout is not None:
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout",
                    "hidden_dropout", "dropout"):
            if hasattr(config, key):
                setattr(config, key, dropout)
    if attention_dropout is not None:
        for key in ("attention_probs_dropout_prob", "attention_dropout"):
            if hasattr(config, key):
                setattr(config, key, attention_dropout)
    tok = load_tokenizer(name)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    try:
        if strict:  # the report would only list the classifier's weights as unexpected
            hf_logging.set_verbosity_error()
        model, info = AutoModel.from_pretrained(name, config=config, dtype=torch.float32,
                                                output_loading_info=True)
    except Exception as exc:
        raise PreflineError(f"cannot load backbone {name!r}: {_first_line(exc)}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    if strict and info["missing_keys"]:
        raise PreflineError(f"the checkpoint lacks backbone weights such as "
                            f"{sorted(info['missing_keys'])[0]!r}", path=name)
    return model, tok, backbone_kind(config)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass
class InputBuilder:
    """Token ids for (prompt, response) within ``max_length``, truncating from the left.

    Encoders see ``[CLS] transcript [SEP] response [SEP]`` (segment ids 0/1); decoders see the
    chat-templated prompt (or a plain transcript) followed by ``response <eos>`` and are pooled
    at that last token. ``counts`` records how many prompts/responses were cut.
    """

    tokenizer: Any
    kind: str
    max_length: int = 512

    def __post_init__(self) -> None:
        self.counts: Counter[str] = Counter()
        tok = self.tokenizer
        if self.kind == "encoder":
            first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
            sep = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
            self.prefix = [first] if first is not None else []
            self.middle = [sep] if sep is not None else []
            self.suffix = [sep] if sep is not None else []
        else:
            self.prefix, self.middle = [], []
            self.suffix = [tok.eos_token_id] if tok.eos_token_id is not None else []
        if self.max_length < len(self.prefix + self.middle + self.suffix) + 8:
            raise PreflineError("max_length is too small to hold a prompt and a response",
                                field="max_length")

    def prompt_ids(self, messages: Messages) -> list[int]:
        tok = self.tokenizer
        if self.kind == "decoder" and getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            return list(ids)
        text = prompt_text(messages)
        if self.kind == "decoder":
            text += "\nAssistant: "
        return list(tok(text, add_special_tokens=False)["input_ids"])

    def response_ids(self, response: str) -> list[int]:
        return list(self.tokenizer(response, add_special_tokens=False)["input_ids"])

    def build(self, prompt: list[int], response: list[int],
              longest: int = 0) -> tuple[list[int], int]:
        """``(ids, prompt_part_length)``; the prompt part includes the leading specials.

        ``longest``: the longest sibling response to the same prompt. The prompt is cut as if
        for that one, so every response to a prompt keeps the SAME prompt tokens and the
        prompt can be shared when they are scored together.
        """
        special = len(self.prefix) + len(self.middle) + len(self.suffix)
        room = self.max_length - special
        widest = max(len(response), longest)
        if len(prompt) + widest > room:
            # Keep whole responses if they fit with a little context; else cut their tails,
            # keeping a quarter of the room for the last prompt tokens.
            keep_prompt = min(len(prompt), max(room - widest, room // 4))
            cut_response = len(response) > room - keep_prompt
            if cut_response:
                self.counts["response_truncated"] += 1
                response = response[: room - keep_prompt]
            if keep_prompt < len(prompt):
                self.counts["prompt_truncated"] += 1
            if cut_response or keep_prompt < len(prompt):
                self.counts["truncated"] += 1
            prompt = prompt[len(prompt) - keep_prompt:]
        head = self.prefix + prompt + self.middle
        return head + response + self.suffix, len(head)


def pool(hidden: Tensor, mask: Tensor, how: str) -> Tensor:
    """``[B, L, H]`` hidden states + ``[B, L]`` mask (right padded) → ``[B, H]``.

    'mean': average over real tokens (what sentence encoders like MiniLM are trained for);
    'cls': the first token; 'last': the last real token (decoders: it has seen everything).
    """
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        last = mask.sum(1).long() - 1
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
