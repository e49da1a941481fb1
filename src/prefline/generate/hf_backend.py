"""The ``hf`` generation backend: an in-process ``transformers`` model, batched and KV-cached
with left padding, through :func:`prefline.generate.decode.decode` (``gen_opt`` fast: our own
decode loop, seeded per completion; none: HF ``generate``, seeded per batch; see
:mod:`prefline.generate.sampling`). It is also the in-process engine of online training
(:meth:`HFBackend.sample_tokens`): built on the live policy module, it needs no weight sync."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prefline.base.errors import PreflineError
from prefline.generate.backend import Completion, PromptLike, Sampling, check_gen_opt, cut_at_stop
from prefline.generate.sampling import (
    cpu_threads,
    encode_ids_left,
    load_policy,
    place_on_device,
    sample_completions,
)
from prefline.models.embedded import DEFAULT_POLICY


class HFBackend:
    """Sample from a model folder, ``.gguf`` file, peft adapter or Hub id (None: the embedded
    SmolLM2-135M-Instruct). ``batch_size`` counts sequences per decode call;
    ``threads`` torch CPU threads while sampling (0 = the cores not already busy).
    ``loaded`` passes an already loaded ``(model, tokenizer)`` instead of loading ``model``
    (online training passes the policy it trains). ``gen_opt``: ``fast`` (default) or
    ``none``, main's original decode path, kept for the benchmark."""

    name = "hf"

    def __init__(self, model: str | None = None, *, device: str = "auto",
                 precision: str = "auto", batch_size: int = 32, threads: int | None = 0,
                 loaded: tuple[Any, Any] | None = None, gen_opt: str = "fast") -> None:
        self.model = model or DEFAULT_POLICY
        self.gen_opt = check_gen_opt(gen_opt)
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
        return sample_completions(self.lm, self.tokenizer, prompts, sampling, self.batch_size,
                                  gen_opt=self.gen_opt)

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

    def sample_tokens(self, prompts: Sequence[Sequence[int]], sampling: Sampling,
                      seeds: Sequence[int], stop_ids: Sequence[int]) -> list[list[int]]:
        """See :class:`prefline.generate.backend.TrainingEngine`: one ``decode`` call on
        the whole list (the caller's micro-batch), the model left in eval mode; threads
        and autocast as the caller set them."""
        from prefline.generate.decode import decode

        self.lm.eval()
        pad = self.tokenizer.pad_token_id
        pad = int(pad if pad is not None else self.tokenizer.eos_token_id)
        device = next(self.lm.parameters()).device
        ids, mask = (t.to(device) for t in encode_ids_left(prompts, pad))
        new, _ = decode(self.lm, ids, mask, k=sampling.n, max_new_tokens=sampling.max_new_tokens,
                        temperature=sampling.temperature, top_p=sampling.top_p,
                        stop_ids=stop_ids, pad_id=pad, seeds=seeds, gen_opt=self.gen_opt)
        return [cut_at_stop(row, stop_ids) for row in new.tolist()]

    def sync_weights(self, model: Any) -> None:
        """Nothing to copy when the engine samples from ``model`` itself (online training
        builds it with ``loaded=(policy, tokenizer)``); any other model is an error."""
        if model is not self.lm:
            raise PreflineError("the hf engine samples from the module it was built on; "
                                "build it with loaded=(policy, tokenizer)", field="backend")
