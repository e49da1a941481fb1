"""``prefline bench generate``: sampling throughput of a policy under several settings,
measured in one run so the ratios are comparable (absolute numbers on a shared CPU are not).

Each setting generates ``n`` responses to the same prompts from the bundled prompt set and
reports new tokens per second (tokens of the decoded responses, EOS excluded). All settings
run inside each run, one after another, on the same loaded weights. There is no peer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.bench.harness import Benchmark, side_main

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
    prompts: int = 4
    """Prompts from the bundled train split (every 7th)."""
    n: int = 4
    """Samples per prompt."""
    max_new_tokens: int = 48
    """New tokens per sample at most."""
    settings: tuple[str, ...] = ("float32:16:0", "bfloat16:4:0", "bfloat16:16:0",
                                 "bfloat16:32:0", "bfloat16:16:2")
    """dtype:batch:threads per setting (batch in sequences; threads 0 = the free cores)."""

    def __post_init__(self) -> None:
        for name in ("prompts", "n", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise PreflineError(f"{name} must be at least 1", field=name)
        if not self.settings:
            raise PreflineError("give at least one setting", field="settings")
        for s in self.settings:
            parse_setting(s)


def run_side(impl: str, setting: str, cfg: GenerationBenchConfig, inputs: Path,
             scratch: Path) -> dict[str, Any]:
    """``{"<dtype>/b<batch>/t<threads>": {seconds, new_tokens, tokens_per_s, threads}}``."""
    import torch

    from prefline.data import load_prompts
    from prefline.generate.sampling import count_new_tokens, cpu_threads, generate
    from prefline.models.hub import load_causal_lm

    texts = [p["prompt"] for p in load_prompts("train")][::7][:cfg.prompts]
    base, tok = load_causal_lm(cfg.policy, dtype="float32")
    out: dict[str, Any] = {}
    for dtype, batch, threads in map(parse_setting, cfg.settings):
        model = base.to(getattr(torch, dtype))
        with cpu_threads(threads or 0):
            used = torch.get_num_threads()
            start = time.perf_counter()
            samples = generate(model, tok, texts, n=cfg.n, max_new_tokens=cfg.max_new_tokens,
                               temperature=0.8, seed=0, batch_size=batch, threads=None)
            seconds = time.perf_counter() - start
        tokens = count_new_tokens(tok, samples)
        out[f"{dtype}/b{batch}/t{threads}"] = {"threads": used, "seconds": seconds,
                                                "new_tokens": tokens,
                                                "tokens_per_s": tokens / seconds}
    return out


BENCH = Benchmark(name="generate", module="prefline.bench.generation",
                  config=GenerationBenchConfig, run_side=run_side)

if __name__ == "__main__":
    side_main(BENCH)
