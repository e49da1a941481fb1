"""Sampling inside online training: k completions per prompt, through a generation engine.

The one way to sample is :meth:`prefline.generate.backend.TrainingEngine.sample_tokens`:
``hf`` (in-process, on the policy module itself, the batched KV-cached
:func:`prefline.generate.decode.decode` that ``prefline generate`` uses too) or ``vllm``
(a vLLM engine given the policy's weights after every update; see
:mod:`prefline.generate.vllm_backend`). :func:`rollout_engine` builds one from
``rollout.backend``; everything else here is engine-free: :func:`sample_rollout` lays prompts
and completions out as tensors, :func:`token_logps` scores them under any model.

Why per-row seeds: a completion must not depend on which other prompts share its batch, or
on which process samples it, so that 2 processes equal 1 and a resumed run equals an
uninterrupted one. Each completion is seeded by ``(seed, step, prompt index, completion
index)`` (:func:`row_seed`); the ``hf`` engine draws its tokens from its own generator
(:class:`prefline.generate.decode.RowSampler`), vLLM seeds each request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from prefline.base.errors import PreflineError
from prefline.generate.backend import Sampling, TrainingEngine, parse_backend
from prefline.generate.decode import row_seed
from prefline.generate.hf_backend import HFBackend
from prefline.generate.sampling import encode_ids_left
from prefline.train.logprobs import chunked_token_logps

__all__ = ["Rollout", "row_seed", "rollout_engine", "sample_rollout", "token_logps"]


def rollout_engine(spec: str, lm: Any, tokenizer: Any, base_model: str | None = None,
                   **options: Any) -> TrainingEngine:
    """The engine online training samples through: ``hf`` wraps ``lm`` itself (no copy, no
    sync); ``vllm`` loads ``base_model`` into a vLLM engine (``options`` go to ``vllm.LLM``)
    and is given ``lm``'s weights before each generation step. A server (``openai:``) cannot
    take new weights, so it is refused."""
    kind, _ = parse_backend(spec)
    if kind == "hf":
        device = str(next(lm.parameters()).device)
        return HFBackend(loaded=(lm, tokenizer), device=device, threads=None)
    if kind == "vllm":
        from prefline.generate.vllm_backend import VLLMBackend

        return VLLMBackend(base_model, **options)
    raise PreflineError(f"online training samples with hf or vllm (an engine that takes the "
                        f"policy's new weights), not {spec!r}", field="backend")


@dataclass
class Rollout:
    """Prompts (left-padded, each repeated k times, adjacent) and their sampled completions
    (right-padded); ``B = prompts × k`` rows."""

    prompt_ids: Tensor
    prompt_mask: Tensor
    completion_ids: Tensor
    completion_mask: Tensor
    """float, 1.0 on sampled tokens up to and including the first stop token."""

    def rows(self) -> int:
        return int(self.completion_ids.shape[0])


def sample_rollout(engine: TrainingEngine, prompts: Sequence[Sequence[int]], *, k: int,
                   max_new_tokens: int, temperature: float, stop_ids: Sequence[int],
                   pad_id: int, seeds: Sequence[int], device: torch.device) -> Rollout:
    """``k`` completions of each tokenised prompt through ``engine``; ``seeds`` has one entry
    per completion (``len(prompts) * k``, prompt-major). The rollout's tensors are on
    ``device`` (the policy's)."""
    rows = [p for p in prompts for _ in range(k)]
    ids, mask = (t.to(device) for t in encode_ids_left(rows, pad_id))
    sampling = Sampling(n=k, max_new_tokens=max_new_tokens, temperature=temperature)
    done = engine.sample_tokens(prompts, sampling, seeds, stop_ids)
    width = max(1, max(len(c) for c in done))  # >= 1 column keeps the shapes valid
    new = torch.full((len(rows), width), pad_id, dtype=torch.long)
    real = torch.zeros((len(rows), width))
    for i, c in enumerate(done):
        new[i, :len(c)] = torch.tensor(c, dtype=torch.long)
        real[i, :len(c)] = 1.0
    return Rollout(ids, mask, new.to(device), real.to(device))


def token_logps(model: nn.Module, rollout: Rollout, temperature: float = 1.0,
                values: nn.Module | None = None, chunk: int = 512) -> tuple[Tensor, Tensor | None]:
    """Per-token log-probs ``(B, T)`` of the completions under ``model`` (logits divided by
    ``temperature``, the distribution they were sampled from; 0 on padding), and with
    ``values`` (a module mapping hidden states ``(B, T, H)`` to ``(B, T)``) the value of each
    completion token's state. Positions count real tokens only, as ``generate`` did for
    left-padded prompts.

    Only the hidden states of real completion tokens go through the LM head, in checkpointed
    chunks (:func:`prefline.train.logprobs.chunked_token_logps`), so logits never exist for
    the whole ``B × T × vocabulary`` at once. The temperature is folded into the head:
    ``(W h)/T = (W/T) h``, and a soft cap ``c·tanh(z/c)/T = (c/T)·tanh((z/T)/(c/T))``."""
    lm: Any = model
    device = next(lm.parameters()).device
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1).to(device)
    mask = torch.cat([rollout.prompt_mask, rollout.completion_mask.long()], 1).to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    t = rollout.completion_ids.shape[1]
    out = lm.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=positions,
                           use_cache=False)
    # The state *before* each completion token predicts it (and its value).
    hidden = out.last_hidden_state[:, -(t + 1):-1]
    real = rollout.completion_mask.to(device) > 0
    head = lm.get_output_embeddings()
    bias = getattr(head, "bias", None)
    scaled = SimpleNamespace(weight=head.weight / temperature,
                             bias=None if bias is None else bias / temperature)
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    picked = chunked_token_logps(hidden[real], scaled, rollout.completion_ids.to(device)[real],
                                 chunk, softcap / temperature if softcap else None)
    logps = torch.zeros(real.shape, dtype=torch.float32, device=device).masked_scatter(real,
                                                                                      picked)
    return logps, (values(hidden) if values is not None else None)
