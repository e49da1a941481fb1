"""Build a generation backend from its spec (see :mod:`prefline.generate.backend`).

    backend = make_backend("hf", "runs/dpo/model", device=ctx.device)
    backend = make_backend("openai:http://127.0.0.1:8080/v1#smollm2")
    backend = make_backend("vllm", "runs/dpo/model")      # a LoRA adapter folder works too
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prefline.generate.backend import Backend, Completion, PromptLike, Sampling, parse_backend
from prefline.generate.hf_backend import HFBackend
from prefline.generate.openai_backend import OpenAIBackend
from prefline.generate.vllm_backend import VLLMBackend


def make_backend(spec: str, model: str | None = None, *, device: str = "auto",
                 precision: str = "auto", batch_size: int = 32, threads: int | None = 0,
                 **options: Any) -> Backend:
    """The backend named by ``spec`` sampling from ``model``.

    ``model``: for ``hf`` and ``vllm`` a folder, ``.gguf`` file, peft adapter or Hub id (None:
    the embedded SmolLM2-135M-Instruct); for ``openai:URL`` the model name sent to the server,
    unless the spec names one after ``#`` (None: ``default``). ``batch_size``/``threads`` are
    the ``hf`` engine's; ``options`` go to the ``openai`` (concurrency, retries, timeout,
    cache, api_key_env) or ``vllm`` (any ``vllm.LLM`` keyword) backend."""
    kind, arg = parse_backend(spec)
    if kind == "hf":
        return HFBackend(model, device=device, precision=precision, batch_size=batch_size,
                         threads=threads, **options)
    if kind == "openai":
        return OpenAIBackend(arg, model, **options)
    return VLLMBackend(model, precision=precision, **options)


def sample_in_batches(backend: Backend, prompts: Sequence[PromptLike], sampling: Sampling,
                      chunk: int = 64) -> Iterator[tuple[list[int], list[list[Completion]]]]:
    """``(prompt indices, their completions)`` as batches finish, so a caller keeps every
    finished prompt when it is interrupted: the ``hf`` engine's own batches (threads as set:
    wrap it in ``cpu_threads``), else ``chunk`` prompts per ``generate`` call (large enough
    for a server's concurrency, small enough that an interrupt loses little)."""
    if isinstance(backend, HFBackend):
        yield from backend.batches(prompts, sampling)
        return
    for start in range(0, len(prompts), chunk):
        idx = list(range(start, min(start + chunk, len(prompts))))
        yield idx, backend.generate([prompts[i] for i in idx], sampling)
