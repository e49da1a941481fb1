"""The generation backend protocol: what every engine that samples from a policy provides.

``generate``, ``judge`` (``lm:``), ``eval policy`` and online training rollouts sample through
one small interface, so the engine is a setting, not a code path:

    backend = make_backend("openai:http://127.0.0.1:8080/v1", model="SmolLM2")   # backends.py
    [[c.text for c in cs] for cs in backend.generate(prompts, Sampling(n=4, temperature=0.8))]

Specs (the ``backend`` field of the generate, judge and eval-policy configs):

- ``hf`` — in-process Hugging Face ``transformers`` model (batched, KV-cached decode:
  :mod:`prefline.generate.decode`);
- ``vllm`` — the vLLM engine in-process, when vLLM is installed (LoRA adapters as LoRA requests);
- ``openai:URL[#model]`` — any OpenAI-compatible server (vLLM, TGI, llama.cpp's server, ...),
  with concurrent requests, retries and a disk cache of replies.

This module is torch-free so configs can validate a spec before anything loads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prefline.base.config import check_at_least, check_sampling
from prefline.base.errors import PreflineError
from prefline.formats.examples import Messages

GEN_OPTS = ("fast", "none")
"""``fast``: shared prefill + the seeded per-row sampler (:mod:`prefline.generate.decode`);
``none``: main's original path. Here, torch-free, so configs and the CLI can check it."""


def cut_at_stop(ids: Sequence[int], stop_ids: Sequence[int]) -> list[int]:
    """``ids`` up to and including the first stop token (what follows is padding)."""
    stops = set(stop_ids)
    cut = next((t + 1 for t, tid in enumerate(ids) if tid in stops), len(ids))
    return list(ids[:cut])


def check_gen_opt(value: str) -> str:
    if value not in GEN_OPTS:
        raise PreflineError(f"gen_opt must be one of {', '.join(GEN_OPTS)}, got {value!r}",
                            field="gen_opt")
    return value

BACKEND_SPECS = "hf, vllm, openai:URL[#model]"
BACKEND_KINDS = ("hf", "vllm", "openai")


@dataclass(frozen=True)
class Sampling:
    """How to sample: ``n`` completions per prompt of at most ``max_new_tokens`` tokens.

    ``temperature`` 0 is greedy. ``logprobs`` asks for the log-prob (nats) of each sampled
    token under the model's raw distribution; ``top_logprobs`` k > 0 also asks for the k most
    likely tokens at each position (``{token text: log-prob}``)."""

    n: int = 1
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    logprobs: bool = False
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        check_at_least(self, 1, "n", "max_new_tokens")
        check_at_least(self, 0, "top_logprobs")
        check_sampling(self.temperature, self.top_p)

    def settings(self) -> dict[str, Any]:
        """The settings that determine the text (recorded with generations, keyed in caches)."""
        return {"n": self.n, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}


@dataclass(frozen=True)
class Completion:
    """One sampled completion.

    ``text``: decoded, special tokens dropped, surrounding whitespace stripped.
    ``token_ids``: the sampled token ids, the end-of-turn token included when it stopped there;
    empty when the engine does not return ids (most OpenAI-compatible servers: re-tokenise
    ``text`` with the policy's tokenizer). ``logprobs``: one per sampled token, when asked.
    ``top_logprobs``: per position, the k most likely ``{token text: log-prob}``, when asked.
    ``finish_reason``: ``stop`` (end of turn) or ``length`` (``max_new_tokens`` reached).
    ``n_tokens``: how many tokens were generated (also when the ids are not returned)."""

    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[dict[str, float], ...] | None = None
    finish_reason: str | None = None
    n_tokens: int = 0


PromptLike = str | Messages
"""A prompt: plain user text or chat messages (the backend applies the chat template)."""


class Backend(Protocol):
    """An engine that samples completions from one policy."""

    name: str
    """``hf``, ``vllm`` or ``openai``."""
    model: str
    """What it samples from (a path, Hub id or the server's model name)."""

    def generate(self, prompts: Sequence[PromptLike], sampling: Sampling,
                 on_done: Callable[[int], None] | None = None) -> list[list[Completion]]:
        """``sampling.n`` completions per prompt (outer list in input order).

        ``on_done(k)`` is called as ``k`` more prompts finish (for progress bars)."""
        ...

    def config(self) -> dict[str, Any]:
        """What determines its outputs besides the sampling settings (engine, model, URL)."""
        ...


class TrainingEngine(Protocol):
    """What online training samples through (``hf`` in-process on the policy itself, or
    ``vllm`` given the policy's weights after every update): completions of tokenised
    prompts, one seed per completion, so a completion depends on its seed alone."""

    def sample_tokens(self, prompts: Sequence[Sequence[int]], sampling: Sampling,
                      seeds: Sequence[int], stop_ids: Sequence[int]) -> list[list[int]]:
        """``sampling.n`` completions of each prompt (token ids, chat template applied):
        ``len(prompts) * n`` rows, prompt-major; row r is seeded with ``seeds[r]`` and ends
        at its first stop token (kept) or after ``sampling.max_new_tokens`` tokens."""
        ...

    def sync_weights(self, model: Any) -> None:
        """Make the engine sample from ``model``'s current weights (after an update)."""
        ...


def parse_backend(spec: str) -> tuple[str, str]:
    """``(kind, argument)`` of a backend spec (``openai:URL[#model]`` -> ``("openai",
    "URL[#model]")``); anything else is a PreflineError naming the ``backend`` field."""
    kind, sep, arg = spec.strip().partition(":")
    if kind not in BACKEND_KINDS:
        raise PreflineError(f"unknown generation backend {spec!r}; expected one of "
                            f"{BACKEND_SPECS}", field="backend")
    if kind == "openai" and not arg.startswith(("http://", "https://")):
        raise PreflineError(f"backend {spec!r} needs a URL: openai:http://HOST:PORT/v1[#model]",
                            field="backend")
    if kind != "openai" and sep:
        raise PreflineError(f"backend {kind!r} takes no argument, got {spec!r}", field="backend")
    return kind, arg
