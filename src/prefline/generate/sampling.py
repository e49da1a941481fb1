"""Batched sampling of K responses per prompt from a causal LM (KV-cached decode).

Prompts are rendered with the tokenizer's chat template and left-padded, so each batch is one
:func:`prefline.generate.decode.decode` call whose KV cache grows from the right. Prompts are sorted by length before batching (less padding), and each completion is
seeded from ``(seed, prompt index, completion index)`` (``gen_opt="none"``, main's original
path: each batch from ``(seed, batch index)``), so the same prompts, seed and batch size
always give the same outputs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prefline.base.errors import PreflineError
from prefline.formats.examples import Messages, as_messages, prompt_text
from prefline.generate.backend import Completion, Sampling, check_gen_opt
from prefline.models.hub import load_causal_lm


def load_policy(path: str | None, precision: str = "auto") -> tuple[Any, Any]:
    """Load a causal LM + tokenizer for generation (Hub id, folder, GGUF, or None for the
    embedded SmolLM2-135M-Instruct). ``precision`` auto|bf16|fp32: auto keeps bf16 *weights*
    on CPUs with native bf16 (no per-step weight casts, unlike autocast; see
    docs/benchmarks/generation.md)."""
    from prefline.base.precision import resolve_precision  # imports torch

    dtype = resolve_precision(precision) or "float32"
    return load_causal_lm(path, dtype=dtype)


def place_on_device(model: Any, device: str) -> Any:
    """``model`` on ``device`` (a Context's: auto = CUDA when present, else CPU; cpu; cuda[:N])."""
    import torch

    name = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PreflineError(f"device {device!r} asked for, but torch sees no CUDA device",
                            field="device")
    return model.to(name)


def auto_threads() -> int:
    """Torch threads for CPU inference: the cores not already busy (at least 1).

    On a shared machine, more threads than free cores make every matmul wait for preempted
    workers: measured here with ~10 runnable processes on 2 cores, a SmolLM2 decode step took
    3.4 s with 2 threads and 0.2 s with 1 (docs/benchmarks/generation.md).
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, round(cores - busy)))


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (0 = ``auto_threads()``, None = as set),
    restoring the previous count afterwards."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads or auto_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def render_prompts(tokenizer: Any, prompts: Sequence[str | Messages]) -> list[str]:
    """Chat-template each prompt with the assistant turn opened (plain transcript without one)."""
    out = []
    for p in prompts:
        messages = as_messages(p)
        if getattr(tokenizer, "chat_template", None):
            out.append(tokenizer.apply_chat_template(messages, tokenize=False,
                                                     add_generation_prompt=True))
        else:
            out.append(prompt_text(messages) + "\nAssistant:")
    return out


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS plus the chat end-of-turn token (``<|im_end|>``), whichever the model knows."""
    ids: set[int] = set()
    for tid in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(tid, int):
            ids.add(tid)
        elif isinstance(tid, list):
            ids.update(tid)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return sorted(ids)


def _batches(order: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(order), size):
        yield order[i:i + size]


def generate(model: Any, tokenizer: Any, prompts: Sequence[str | Messages], n: int = 4,
             max_new_tokens: int = 128, temperature: float = 0.8, top_p: float = 0.95,
             seed: int = 0, batch_size: int = 32, precision: str = "fp32",
             threads: int | None = 0, on_batch: Callable[[int], None] | None = None,
             gen_opt: str = "fast") -> list[list[str]]:
    """``n`` sampled responses per prompt: a list (one per prompt, input order) of ``n`` strings.

    ``batch_size`` counts sequences per ``generate`` call (prompts per call = batch_size // n,
    at least 1). ``temperature`` 0 means greedy (then the n responses are identical).
    ``precision`` bf16|auto autocasts an fp32 model (prefer loading bf16 weights instead).
    ``threads``: torch threads while generating (0 = ``auto_threads()``, None = leave as set).
    ``on_batch(k)`` is called after each batch with the number of prompts finished.
    ``gen_opt``: fast | none (see :mod:`prefline.generate.decode`).
    """
    results: list[list[str]] = [[] for _ in prompts]
    with cpu_threads(threads):
        for idx, texts in sample_batches(model, tokenizer, prompts, n, max_new_tokens,
                                         temperature, top_p, seed, batch_size, precision,
                                         gen_opt):
            for i, t in zip(idx, texts, strict=True):
                results[i] = t
            if on_batch is not None:
                on_batch(len(idx))
    return results


def sample_batches(model: Any, tokenizer: Any, prompts: Sequence[str | Messages], n: int = 4,
                   max_new_tokens: int = 128, temperature: float = 0.8, top_p: float = 0.95,
                   seed: int = 0, batch_size: int = 32, precision: str = "fp32",
                   gen_opt: str = "fast") -> Iterator[tuple[list[int], list[list[str]]]]:
    """What :func:`generate` samples, one batch at a time: ``(prompt indices, their n
    responses each)``, so a caller keeps every finished prompt when it is interrupted.
    Threads are left as set (wrap it in :func:`cpu_threads`)."""
    sampling = Sampling(n=n, max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, seed=seed)
    for idx, rows in sample_completions(model, tokenizer, prompts, sampling, batch_size,
                                        precision, gen_opt):
        yield idx, [[c.text for c in cs] for cs in rows]


def sample_completions(model: Any, tokenizer: Any, prompts: Sequence[str | Messages],
                       sampling: Sampling, batch_size: int = 32, precision: str = "fp32",
                       gen_opt: str = "fast",
                       ) -> Iterator[tuple[list[int], list[list[Completion]]]]:
    """:func:`sample_batches` with token ids (and log-probs when ``sampling.logprobs``):
    ``(prompt indices, their n Completions each)`` per batch, through
    :func:`prefline.generate.decode.decode` (``gen_opt`` fast | none).

    Prompts are sorted by length (less padding). ``fast`` seeds completion j of prompt i
    with ``row_seed(seed, 0, i, j)`` (i its index in ``prompts``), so a completion does not
    depend on the batching; ``none`` seeds batch b with ``seed * 1_000_003 + b``. Either way
    the same prompts, seed and batch size always give the same outputs."""
    import torch

    from prefline.generate.decode import decode, row_seed

    check_gen_opt(gen_opt)
    texts = render_prompts(tokenizer, prompts)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:  # decoder-only tokenizers often lack one; EOS is safe under a mask
        pad_id = tokenizer.eos_token_id
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    n = sampling.n
    stops = stop_token_ids(model, tokenizer)
    device = next(model.parameters()).device
    reps = n if sampling.temperature > 0 else 1  # greedy: one response, decoded once
    scores = sampling.logprobs or sampling.top_logprobs > 0
    for b, idx in enumerate(_batches(order, max(1, batch_size // n))):
        enc = encode_left(tokenizer, [texts[i] for i in idx], pad_id)
        torch.manual_seed(sampling.seed * 1_000_003 + b)
        with torch.inference_mode(), _autocast(model, precision):
            new, logits = decode(
                model, enc["input_ids"].to(device), enc["attention_mask"].to(device), k=reps,
                max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                top_p=sampling.top_p, stop_ids=stops, pad_id=pad_id, gen_opt=gen_opt,
                seeds=[row_seed(sampling.seed, 0, i, j) for i in idx for j in range(reps)],
                output_logits=scores)
        new = new.cpu()
        # raw logits (not the temperature/top-p processed scores): log-probs under the model
        logp = torch.log_softmax(torch.stack(logits, 1).float(), -1).cpu() if logits else None
        done = [_completion(tokenizer, new[k], stops, sampling,
                            None if logp is None else logp[k]) for k in range(new.shape[0])]
        yield idx, [done[j * reps:(j + 1) * reps] * (n // reps) for j in range(len(idx))]


def _completion(tokenizer: Any, row: Any, stops: list[int], sampling: Sampling,
                logp: Any | None) -> Completion:
    """One generated row: cut after the first stop token (what follows is padding)."""
    ids = row.tolist()
    cut = next((t + 1 for t, tid in enumerate(ids) if tid in stops), None)
    ids = ids[:cut] if cut is not None else ids
    # A NUL byte token (small or random models emit them) cannot be stored (base/text.py).
    text = tokenizer.decode(ids, skip_special_tokens=True).replace("\x00", "\ufffd").strip()
    lps = tops = None
    if logp is not None:
        steps = logp[:len(ids)]
        if sampling.logprobs:
            lps = tuple(steps.gather(-1, row[:len(ids), None]).squeeze(-1).tolist())
        if sampling.top_logprobs:
            val, top = steps.topk(sampling.top_logprobs, dim=-1)
            tops = tuple({tokenizer.decode([t]): v for t, v in zip(ti, vi, strict=True)}
                         for ti, vi in zip(top.tolist(), val.tolist(), strict=True))
    return Completion(text, tuple(ids), lps, tops, "length" if cut is None else "stop", len(ids))


def encode_left(tokenizer: Any, texts: list[str], pad_id: int) -> dict[str, Any]:
    """Tokenise with left padding (the chat template already added any special tokens)."""
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    ids, mask = encode_ids_left(rows, pad_id)
    return {"input_ids": ids, "attention_mask": mask}


def encode_ids_left(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """``(ids, mask)`` of token rows, left-padded to the longest (long tensors)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        if r:
            ids[k, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
            mask[k, width - len(r):] = 1
    return ids, mask


def _autocast(model: Any, precision: str) -> Any:
    """bf16 autocast for an fp32 model when asked (or auto on CPUs with native bf16)."""
    import torch

    from prefline.base.precision import autocast_context, resolve_precision

    if next(model.parameters()).dtype != torch.float32:
        return contextlib.nullcontext()
    return autocast_context(resolve_precision(precision))


def count_new_tokens(tokenizer: Any, responses: list[list[str]]) -> int:
    """Total tokens across all responses (for throughput figures)."""
    return sum(len(tokenizer(r, add_special_tokens=False)["input_ids"])
               for rs in responses for r in rs)
