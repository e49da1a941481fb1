"""A prefline reward model as a transformers sequence classifier, for exports that need it.

This file is copied into an exported reward model as ``modeling_prefline_reward.py`` and named
in its ``config.json`` ``auto_map``, so that

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

loads it with only torch and transformers installed (no prefline). It exists because a stock
``BertForSequenceClassification`` classifies the pooler output of ``[CLS]``, while prefline's
default encoder reward model averages every token (mean pooling) and lets prompt tokens attend
to the prompt only (so that several responses to one prompt can share one copy of it when
prefline packs them). Both are reproduced here from the inputs a BERT tokenizer gives for a
``(prompt, response)`` pair: ``token_type_ids`` 0 mark the prompt part, 1 the response part.
Models trained with ``pooling=pooler`` (encoders) or ``pooling=last`` (decoders) export as stock
transformers classes instead and never use this file.
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

CONFIG_CLASS = "BertConfig"
"""The backbone's config class; the exporter writes the real one into the copied file, since
transformers refuses a remote model whose ``config_class`` differs from the config's class."""
BACKBONE_PREFIX = "bert"
"""The backbone's ``base_model_prefix`` (also written by the exporter): the weights are stored
as ``<prefix>.*`` like a stock classifier's, so ``AutoModel`` loads the backbone alone."""


class PreflineRewardModel(PreTrainedModel):
    """Backbone (``AutoModel``, under its own prefix) + pooling (``config.prefline_pooling``: mean | cls) + one linear
    classifier; ``config.prefline_isolate_prompt`` restricts prompt tokens to the prompt."""

    config_class = getattr(transformers, CONFIG_CLASS)
    base_model_prefix = BACKBONE_PREFIX
    # attention runs inside the backbone, which picks its own kernel
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        setattr(self, BACKBONE_PREFIX, AutoModel.from_config(config))
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                **kwargs: Any) -> SequenceClassifierOutput:
        """``logits [B, num_labels]`` for right-padded ``(prompt, response)`` pairs (the
        padding side of BERT-family tokenizers; position ids count from the first column)."""
        assert input_ids is not None, "input_ids are required"
        real = (attention_mask if attention_mask is not None
                else torch.ones_like(input_ids)).bool()
        types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
        mask: torch.Tensor = real
        if getattr(self.config, "prefline_isolate_prompt", False):
            # key k is visible to query q when k is a real prompt token, or q is a response
            # token and k any real token. Padding queries see the prompt (never an empty row).
            prompt = real & (types == 0)
            response = (real & (types == 1)).unsqueeze(2)
            mask = (prompt.unsqueeze(1) | (response & real.unsqueeze(1))).unsqueeze(1)
        inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": mask}
        if int(getattr(self.config, "type_vocab_size", 0) or 0) > 1:
            inputs["token_type_ids"] = types
        hidden = getattr(self, BACKBONE_PREFIX)(**inputs).last_hidden_state
        if getattr(self.config, "prefline_pooling", "mean") == "cls":
            pooled = hidden[:, 0]
        else:
            weights = real.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return SequenceClassifierOutput(logits=self.score(pooled.to(self.score.weight.dtype)))
