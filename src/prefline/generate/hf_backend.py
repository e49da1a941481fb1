"""The ``hf`` generation backend: an in-process ``transformers`` model (batched ``generate``
with a KV cache, left padding, seeded per batch; see :mod:`prefline.generate.sampling`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prefline.generate.backend import Completion, PromptLike, Sampling
from prefline.generate.sampling import cpu_threads, load_policy, place_on_device, sample_completions
from prefline.models.embedded import DEFAULT_POLICY


class HFBackend:
    """Sample from a model folder, ``.gguf`` file, peft adapter or Hub id (None: the embedded
    SmolLM2-135M-Instruct). ``batch_size`` counts sequences per ``generate`` call;
    ``threads`` torch CPU threads while sampling (0 = the cores not already busy).
    ``loaded`` passes an already loaded ``(model, tokenizer)`` instead of loading ``model``."""

    name = "hf"

    def __init__(self, model: str | None = None, *, device: str = "auto",
                 precision: str = "auto", batch_size: int = 32, threads: int | None = 0,
                 loaded: tuple[Any, Any] | None = None) -> None:
        self.model = model or DEFAULT_POLICY
        self.batch_size, self.threads = max(1, batch_size), threads
        if loaded is None:
            with cpu_threads(threads):  # set before loading: it speeds up loading too
                loaded = load_policy(model, precision)
        self.lm, self.tokenizer = place_on_device(loaded[0], device), loaded[1]

    @property
    def dtype(self) -> str:
        return str(next(self.lm.parameters()).dtype).removeprefix("torch.")

    def config(self) -> dict[str, Any]:
        return {"backend": "hf", "model": self.model, "dtype": self.dtype,
                "batch_size": self.batch_size}

    def batches(self, prompts: Sequence[PromptLike], sampling: Sampling,
                ) -> Iterator[tuple[list[int], list[list[Completion]]]]:
        """``(prompt indices, their completions)`` one batch at a time (threads as set)."""
        # no autocast: ``precision`` already chose the weights' dtype when loading
        return sample_completions(self.lm, self.tokenizer, prompts, sampling, self.batch_size)

    def generate(self, prompts: Sequence[PromptLike], sampling: Sampling,
                 on_done: Callable[[int], None] | None = None) -> list[list[Completion]]:
        out: list[list[Completion]] = [[] for _ in prompts]
        with cpu_threads(self.threads):
            for idx, rows in self.batches(prompts, sampling):
                for i, cs in zip(idx, rows, strict=True):
                    out[i] = cs
                if on_done is not None:
                    on_done(len(idx))
        return out
