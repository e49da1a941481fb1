"""Tiny random models built in code, for tests and ``demo --quick`` (no download, seconds).

The tokenizer is byte-level (256 byte tokens + specials), so any text round-trips, and it
carries a small ChatML-style chat template like the real default policy's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPECIALS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "[CLS]", "[SEP]"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(chat_template: bool = True, pad: bool = True) -> Any:
    """A byte-level BPE tokenizer with no merges: vocab 256 + len(SPECIALS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for special in SPECIALS:
        vocab[special] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|endoftext|>", bos_token=None,
        pad_token="<|pad|>" if pad else None, unk_token=None,
        cls_token="[CLS]", sep_token="[SEP]",
    )
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_causal_lm(seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4) -> Any:
    """A random Llama-architecture causal LM sized for tests (~100k parameters)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def tiny_encoder(seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 2) -> Any:
    """A random BERT encoder (AutoModel) and the byte tokenizer, for reward-model tests."""
    import torch
    from transformers import BertConfig, BertModel

    tok = tiny_tokenizer(chat_template=True)
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    return BertModel(cfg), tok


def save_tiny(kind: str, path: str | Path, seed: int = 0) -> Path:
    """Write a tiny model + tokenizer to ``path`` (``kind``: 'causal' or 'encoder')."""
    path = Path(path)
    model, tok = tiny_causal_lm(seed) if kind == "causal" else tiny_encoder(seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
