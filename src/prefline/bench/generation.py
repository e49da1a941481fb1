"""``prefline bench generate``: sampling throughput (new tokens/s) of the optimised decode path
against main's original one (``--against main``), at the demo's settings by default.

The prefline side samples with ``gen_opt`` (default ``fast``: our own decode loop with one
prefill per prompt, a preallocated KV cache, the seeded per-row inverse-CDF sampler and
finished rows leaving the batch; see :mod:`prefline.generate.decode`); the ``main`` side with
``gen_opt="none"``, main's original path (HF ``generate``: prompts prefilled ``n`` times,
HF's multinomial sampler, a KV cache concatenated at every step).
Each side runs in its own subprocess, repetitions interleaved (the one harness,
:mod:`prefline.bench.harness`). Both sample the same prompts from the bundled train split,
``n`` per prompt, at each ``dtype:batch:threads`` setting in turn on the same loaded weights;
``tokens_per_s`` (the headline) is the first setting's. Tokens are those of the decoded
responses (EOS excluded). One tiny warm-up call first, so one-time set-up is not timed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.bench.harness import Benchmark, side_main
from prefline.generate.backend import GEN_OPTS

DTYPES = ("float32", "bfloat16")


def parse_setting(text: str) -> tuple[str, int, int]:
    """``"bfloat16:16:0"`` -> (weights dtype, sequences per batch, torch threads; 0 = auto)."""
    parts = text.split(":")
    try:
        dtype, batch, threads = parts[0], int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        raise PreflineError(f"expected dtype:batch:threads (e.g. bfloat16:16:0), got {text!r}",
                            field="settings") from None
    if dtype not in DTYPES or batch < 1 or threads < 0 or len(parts) != 3:
        raise PreflineError(f"expected dtype in {DTYPES}, batch >= 1, threads >= 0, got {text!r}",
                            field="settings")
    return dtype, batch, threads


@dataclass(frozen=True)
class GenerationBenchConfig:
    """Which policy, how much to sample, and the settings compared."""

    policy: str | None = None
    """Hub id, folder or GGUF; None = the embedded SmolLM2-135M-Instruct."""
    prompts: int = 64
    """Prompts from the bundled train split, spread over it (64 x n 4 = one demo batch)."""
    n: int = 4
    """Samples per prompt (the demo's k)."""
    max_new_tokens: int = 48
    """New tokens per sample at most (the demo's)."""
    temperature: float = 0.9
    """Sampling temperature (the demo's)."""
    top_p: float = 1.0
    """Nucleus cut (the demo's 1.0 = none)."""
    settings: tuple[str, ...] = ("bfloat16:256:0",)
    """dtype:batch:threads per setting (batch in sequences; threads 0 = the free cores);
    the first gives the headline. Default: the demo's (bf16 weights, 256 per call)."""
    gen_opt: str = "fast"
    """Decode path of the prefline side: fast, or none (main's original path; the main
    peer always runs none)."""

    def __post_init__(self) -> None:
        for name in ("prompts", "n", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise PreflineError(f"{name} must be at least 1", field=name)
        if self.gen_opt not in GEN_OPTS:
            raise PreflineError(f"gen_opt must be one of {', '.join(GEN_OPTS)}",
                                field="gen_opt")
        if not self.settings:
            raise PreflineError("give at least one setting", field="settings")
        for s in self.settings:
            parse_setting(s)


def run_side(impl: str, setting: str, cfg: GenerationBenchConfig, inputs: Path,
             scratch: Path) -> dict[str, Any]:
    """``{"gen_opt", "tokens_per_s" (first setting), "<dtype>/b<batch>/t<threads>":
    {seconds, new_tokens, tokens_per_s, threads}}``."""
    import torch

    from prefline.data import load_prompts
    from prefline.generate.sampling import count_new_tokens, cpu_threads, generate
    from prefline.models.hub import load_causal_lm

    gen_opt = "none" if impl == "main" else cfg.gen_opt
    bundled = [p["prompt"] for p in load_prompts("train")]
    texts = bundled[::max(1, len(bundled) // cfg.prompts)][:cfg.prompts]
    base, tok = load_causal_lm(cfg.policy, dtype="float32")
    out: dict[str, Any] = {"gen_opt": gen_opt}
    for dtype, batch, threads in map(parse_setting, cfg.settings):
        model = base.to(getattr(torch, dtype))
        kw: dict[str, Any] = {"temperature": cfg.temperature, "top_p": cfg.top_p, "seed": 0,
                              "threads": None, "gen_opt": gen_opt}
        with cpu_threads(threads or 0):
            used = torch.get_num_threads()
            generate(model, tok, texts[:1], n=2, max_new_tokens=2, **kw)  # warm-up
            start = time.perf_counter()
            samples = generate(model, tok, texts, n=cfg.n, max_new_tokens=cfg.max_new_tokens,
                               batch_size=batch, **kw)
            seconds = time.perf_counter() - start
        tokens = count_new_tokens(tok, samples)
        out[f"{dtype}/b{batch}/t{threads}"] = {"threads": used, "seconds": seconds,
                                                "new_tokens": tokens,
                                                "tokens_per_s": tokens / seconds}
        out.setdefault("tokens_per_s", tokens / seconds)
    return out


BENCH = Benchmark(name="generate", module="prefline.bench.generation",
                  config=GenerationBenchConfig, run_side=run_side,
                  peers={"main": ("default",)}, headline="tokens_per_s")

if __name__ == "__main__":
    side_main(BENCH)
