"""``prefline bench generate``: sampling throughput of a policy under several settings,
measured in one run so the ratios are comparable (absolute numbers on a shared CPU are not).

Each setting generates ``n`` responses to the same prompts from the bundled prompt set and
reports new tokens per second (tokens of the decoded responses, EOS excluded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SETTINGS = (  # (weights dtype, batch size in sequences, torch threads; 0 = auto_threads())
    ("float32", 16, 0),
    ("bfloat16", 4, 0),
    ("bfloat16", 16, 0),
    ("bfloat16", 32, 0),
    ("bfloat16", 16, 2),
)


def bench_generation(policy: str | None = None, prompts: int = 4, n: int = 4,
                     max_new_tokens: int = 48, settings: tuple[tuple[str, int, int], ...] = SETTINGS,
                     seed: int = 0, on_result: Callable[[dict[str, Any]], None] | None = None
                     ) -> list[dict[str, Any]]:
    """One result dict per setting: dtype, batch_size, threads, seconds, new_tokens, tokens_per_s.
    ``on_result`` sees each as soon as it is measured."""
    import torch

    from prefline.data import load_prompts
    from prefline.generate.sampling import count_new_tokens, cpu_threads, generate
    from prefline.models.hub import load_causal_lm

    texts = [p["prompt"] for p in load_prompts("train")][::7][:prompts]
    base, tok = load_causal_lm(policy, dtype="float32")
    results = []
    for dtype, batch, threads in settings:
        model = base.to(getattr(torch, dtype))
        with cpu_threads(threads or 0):
            used = torch.get_num_threads()
            start = time.perf_counter()
            out = generate(model, tok, texts, n=n, max_new_tokens=max_new_tokens,
                           temperature=0.8, seed=seed, batch_size=batch, threads=None)
            seconds = time.perf_counter() - start
        tokens = count_new_tokens(tok, out)
        results.append({"dtype": dtype, "batch_size": batch, "threads": used,
                        "prompts": len(texts), "n": n, "max_new_tokens": max_new_tokens,
                        "seconds": round(seconds, 2), "new_tokens": tokens,
                        "tokens_per_s": round(tokens / seconds, 1)})
        if on_result is not None:
            on_result(results[-1])
    return results
