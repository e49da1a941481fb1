"""The generate stage: sample ``n`` responses per prompt from a policy, write them, store them.

    result = run(GenerateConfig(prompts="prompts.jsonl", out=Path("cands.jsonl")), ctx)

The output file (one line per prompt: prompt, responses, tags, model, generation settings)
is what ``prefline judge`` reads; the responses also go into the store (idempotent by
content hash), unless ``store`` is off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prefline.base.config import check_at_least, check_sampling
from prefline.base.errors import PreflineError
from prefline.base.progress import StepProgress
from prefline.base.stage import StageResult
from prefline.generate.io import generation_record, read_prompts, write_jsonl
from prefline.generate.sampling import (
    count_new_tokens,
    cpu_threads,
    generate,
    load_policy,
    place_on_device,
)
from prefline.generate.store import Generation, store_generations
from prefline.models.embedded import DEFAULT_POLICY
from prefline.store.context import Context


@dataclass(frozen=True)
class GenerateConfig:
    """Which policy samples what, how, and where the candidates go."""

    prompts: str
    """Prompts: JSONL with 'prompt' (+ id/tags/category), a text file with one prompt per
    line, or bundled:train / bundled:eval."""
    out: Path
    """Output JSONL: one line per prompt with its responses (the folder must exist)."""
    policy: str | None = None
    """Model folder, .gguf file or Hub id (default: embedded SmolLM2-135M-Instruct)."""
    n: int = 4
    """Responses per prompt."""
    max_new_tokens: int = 192
    """New tokens per response at most."""
    temperature: float = 0.8
    """Sampling temperature; 0 = greedy (then the n responses are identical)."""
    top_p: float = 0.95
    """Nucleus sampling: keep the smallest token set with this much probability."""
    seed: int = 0
    """Seed: the same prompts, seed and batch size always give the same responses."""
    batch_size: int = 32
    """Sequences per generate call (prompts per call = batch_size // n, at least 1)."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """Weights dtype: auto = bf16 on CPUs with native bf16 and on GPUs that support it."""
    threads: int = 0
    """Torch CPU threads; 0 = the cores not already busy."""
    limit: int | None = None
    """Only the first N prompts."""
    store: bool = True
    """Also store the prompts and responses in the store (--no-store: only write the file)."""

    def __post_init__(self) -> None:
        check_at_least(self, 1, "n", "max_new_tokens", "batch_size", "limit")
        check_sampling(self.temperature, self.top_p)
        if self.threads < 0:
            raise PreflineError(f"expected 0 (auto) or more threads, got {self.threads}",
                                field="threads")


@dataclass(frozen=True)
class GenerateResult(StageResult):
    """What was sampled, how fast, and what the store gained."""

    prompts: int
    responses: int
    out: Path
    model: str
    new_tokens: int
    seconds: float
    tokens_per_s: float
    gen_params: dict[str, Any]
    """The sampling settings recorded with every response (plus the weights dtype)."""
    stored: dict[str, int] | None = None
    """``{"prompts", "responses", "new_responses"}``; None when not stored."""


def advance(bar: StepProgress) -> Callable[[int], None]:
    """A callback that moves ``bar`` on by k finished items (prompts, pairs)."""
    def step(k: int) -> None:
        for _ in range(k):
            bar.update({})
    return step


def run(cfg: GenerateConfig, ctx: Context) -> GenerateResult:
    """Sample ``cfg.n`` responses per prompt (batched, KV cache, seeded) and write/store them.

    Fails before loading the model when the prompts are unreadable or the output folder
    is missing.
    """
    rows = read_prompts(cfg.prompts)[:cfg.limit]
    if not cfg.out.parent.exists():
        raise PreflineError(f"output folder {cfg.out.parent} does not exist", path=str(cfg.out),
                            field="out")
    with cpu_threads(cfg.threads):  # set before loading: it speeds up loading too
        model, tok = load_policy(cfg.policy, cfg.precision)
        model = place_on_device(model, ctx.device)
        params = {"n": cfg.n, "max_new_tokens": cfg.max_new_tokens,
                  "temperature": cfg.temperature, "top_p": cfg.top_p, "seed": cfg.seed,
                  "batch_size": cfg.batch_size,
                  "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
        start = time.perf_counter()
        with ctx.progress.bar(len(rows), "generating") as bar:
            texts = generate(model, tok, [r.prompt for r in rows], n=cfg.n,
                             max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                             top_p=cfg.top_p, seed=cfg.seed, batch_size=cfg.batch_size,
                             threads=None, on_batch=advance(bar))
        seconds = time.perf_counter() - start
    name = cfg.policy or DEFAULT_POLICY
    gens = [Generation(r.prompt, t, name, params, r.tags) for r, t in zip(rows, texts, strict=True)]
    write_jsonl(cfg.out, (generation_record(g) for g in gens))
    tokens = count_new_tokens(tok, texts)
    stored = store_generations(ctx.db, gens, actor="generate") if cfg.store else None
    return GenerateResult(prompts=len(gens), responses=sum(len(t) for t in texts), out=cfg.out,
                          model=name, new_tokens=tokens, seconds=round(seconds, 2),
                          tokens_per_s=round(tokens / max(seconds, 1e-9), 1), gen_params=params,
                          stored=stored)
