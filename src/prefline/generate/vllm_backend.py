"""The ``vllm`` generation backend: the vLLM engine in-process (``vllm.LLM``), when vLLM is
installed (a CUDA machine; prefline does not depend on it).

A peft LoRA adapter folder (what ``train dpo --lora`` saves) is served the way vLLM serves
adapters: the engine loads the adapter's base model once with ``enable_lora=True`` and every
request carries a ``LoRARequest`` for the adapter, so the weights are never merged and several
adapters of one base can share an engine. Any other folder, ``.gguf`` file or Hub id loads as
a plain model (a ``.gguf`` file through its converted transformers folder).

As the engine of online training (:class:`prefline.generate.backend.TrainingEngine`) it
samples tokenised prompts (``TokensPrompt``), one request per completion seeded with that
completion's seed, and :meth:`VLLMBackend.sync_weights` loads the policy's state dict into
the engine's model after every update (``LLM.apply_model`` → the model's ``load_weights``,
which takes Hugging Face parameter names, then ``reset_prefix_cache``: cached KV blocks were
computed with the old weights). A LoRA policy is refused there (vLLM would need the merged
weights or an adapter per update); full fine-tuning only.

Not exercised by the test suite: vLLM needs a GPU and is not installed in CI. The code follows
vLLM's documented offline API (``LLM.chat``, ``LLM.generate`` with ``TokensPrompt``,
``SamplingParams``, ``LoRARequest``, ``LLM.apply_model``, ``LLM.reset_prefix_cache``). With
vLLM's V1 engine in a separate process (its default), ``apply_model`` pickles the function
and the weights it closes over: set ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` to keep the engine
in-process (no copy through pickling), or ``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` to allow
the pickled function.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.formats.examples import as_messages
from prefline.generate.backend import Completion, PromptLike, Sampling, cut_at_stop
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


    def sample_tokens(self, prompts: Sequence[Sequence[int]], sampling: Sampling,
                      seeds: Sequence[int], stop_ids: Sequence[int]) -> list[list[int]]:
        """See :class:`prefline.generate.backend.TrainingEngine`: one request per completion
        (``n=1``, seeded with its own seed, so it does not depend on its neighbours)."""
        from vllm.inputs import TokensPrompt

        params = [self._vllm.SamplingParams(
            n=1, max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
            top_p=sampling.top_p, seed=int(s), stop_token_ids=list(stop_ids)) for s in seeds]
        requests = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts
                    for _ in range(sampling.n)]
        outs = self.engine.generate(requests, params, lora_request=self.lora, use_tqdm=False)
        # vLLM keeps the stop token in token_ids; cut_at_stop also drops anything after it
        return [cut_at_stop(list(o.outputs[0].token_ids), stop_ids) for o in outs]

    def sync_weights(self, model: Any) -> None:
        """Load ``model``'s current weights (a full ``transformers`` causal LM, Hugging Face
        parameter names) into the engine's model, then drop the prefix cache."""
        if self.lora is not None or hasattr(model, "peft_config"):
            raise PreflineError("vLLM weight sync takes a fully fine-tuned policy; a LoRA "
                                "policy samples with backend hf", field="backend")
        weights = [(name, t.detach()) for name, t in model.state_dict().items()]
        self.engine.apply_model(lambda m: m.load_weights(weights))
        self.engine.reset_prefix_cache()


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
