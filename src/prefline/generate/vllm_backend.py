"""The ``vllm`` generation backend: the vLLM engine in-process (``vllm.LLM``), when vLLM is
installed (a CUDA machine; prefline does not depend on it).

A peft LoRA adapter folder (what ``train dpo --lora`` saves) is served the way vLLM serves
adapters: the engine loads the adapter's base model once with ``enable_lora=True`` and every
request carries a ``LoRARequest`` for the adapter, so the weights are never merged and several
adapters of one base can share an engine. Any other folder, ``.gguf`` file or Hub id loads as
a plain model (a ``.gguf`` file through its converted transformers folder).

Not exercised by the test suite: vLLM needs a GPU and is not installed in CI. The code follows
vLLM's documented offline API (``LLM.chat``, ``SamplingParams``, ``LoRARequest``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.formats.examples import as_messages
from prefline.generate.backend import Completion, PromptLike, Sampling
from prefline.models.embedded import DEFAULT_POLICY
from prefline.models.hub import CARD, resolve_adapter_base, resolve_model_path


def _vllm() -> Any:
    """The vllm module, or a PreflineError saying how to get it."""
    try:
        import vllm
    except ImportError:
        raise PreflineError("the vllm backend needs vLLM installed (`pip install vllm` on a "
                            "CUDA machine); use --backend hf, or serve the model with "
                            "`vllm serve` and use --backend openai:URL", field="backend") from None
    return vllm


class VLLMBackend:
    """``model``: folder, ``.gguf`` file, peft adapter or Hub id (None: the embedded
    SmolLM2-135M-Instruct). ``options`` go to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``,
    ``tensor_parallel_size``, ``max_lora_rank``)."""

    name = "vllm"

    def __init__(self, model: str | None = None, *, precision: str = "auto",
                 **options: Any) -> None:
        vllm = _vllm()
        self.model = model or DEFAULT_POLICY
        source = resolve_model_path(model)
        self.lora: Any = None
        if (Path(source) / "adapter_config.json").exists():
            from vllm.lora.request import LoRARequest

            base = resolve_model_path(resolve_adapter_base(Path(source), _card(Path(source))))
            rank = json.loads((Path(source) / "adapter_config.json").read_text()).get("r", 16)
            options = {"enable_lora": True, "max_lora_rank": max(16, int(rank)), **options}
            self.lora = LoRARequest(Path(source).name, 1, source)
            source = base
        dtype = {"bf16": "bfloat16", "fp32": "float32"}.get(precision, "auto")
        self.engine = vllm.LLM(model=source, dtype=dtype, **options)
        self._vllm = vllm

    def config(self) -> dict[str, Any]:
        return {"backend": "vllm", "model": self.model, "lora": self.lora is not None}

    def generate(self, prompts: Sequence[PromptLike], sampling: Sampling,
                 on_done: Callable[[int], None] | None = None) -> list[list[Completion]]:
        params = self._vllm.SamplingParams(
            n=sampling.n, max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
            top_p=sampling.top_p, seed=sampling.seed,
            logprobs=(sampling.top_logprobs or 1) if sampling.logprobs or sampling.top_logprobs
            else None)
        # vLLM schedules the whole list itself (continuous batching): one call
        outs = self.engine.chat([as_messages(p) for p in prompts], params,
                                lora_request=self.lora, use_tqdm=False)
        done = [[_completion(o, sampling) for o in out.outputs] for out in outs]
        if on_done is not None:
            on_done(len(done))
        return done


def _card(folder: Path) -> dict[str, Any] | None:
    path = folder / CARD
    return json.loads(path.read_text()) if path.exists() else None


def _completion(out: Any, sampling: Sampling) -> Completion:
    """A vLLM ``CompletionOutput``: logprobs are one ``{token id: Logprob}`` per position."""
    ids = tuple(int(t) for t in out.token_ids)
    steps = out.logprobs or []
    lps = (tuple(float(step[t].logprob) for step, t in zip(steps, ids, strict=False))
           if sampling.logprobs else None)
    tops = (tuple({str(lp.decoded_token): float(lp.logprob) for lp in sorted(
        step.values(), key=lambda lp: -lp.logprob)[:sampling.top_logprobs]} for step in steps)
        if sampling.top_logprobs else None)
    return Completion(out.text.strip(), ids, lps, tops, out.finish_reason, len(ids))
