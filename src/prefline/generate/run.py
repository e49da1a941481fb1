"""The generate stage: sample ``n`` responses per prompt from a policy, write them, store them.

    result = run(GenerateConfig(prompts="prompts.jsonl", out=Path("cands.jsonl")), ctx)

The output file (one line per prompt: prompt, responses, tags, model, generation settings)
is what ``prefline judge`` reads; the responses also go into the store (idempotent by
content hash), unless ``store`` is off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prefline.base import interrupts
from prefline.base.config import check_at_least, check_sampling
from prefline.base.errors import PreflineError
from prefline.base.progress import notice
from prefline.base.stage import StageResult
from prefline.formats.examples import Messages
from prefline.formats.records import prompt_key
from prefline.generate.backend import Backend, Sampling, parse_backend
from prefline.generate.backends import make_backend, sample_in_batches
from prefline.generate.hf_backend import HFBackend
from prefline.generate.io import generation_record, read_generations, read_prompts, write_jsonl
from prefline.generate.sampling import cpu_threads
from prefline.generate.store import Generation, store_generations
from prefline.judges import parse_spec
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
    """Model folder, .gguf file or Hub id (default: embedded SmolLM2-135M-Instruct); with
    --backend openai:URL the model name sent to the server (unless the URL ends in #model)."""
    backend: str = "hf"
    """Generation engine: hf (in-process transformers), vllm (in-process vLLM, when
    installed), openai:URL or openai:URL#model (any OpenAI-compatible server); see
    docs/generation.md."""
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
    best_of: int | None = None
    """Best-of-N: sample N candidates per prompt instead of n and score each with --reward or
    --judge; every candidate is written with its score, the best marked (best, best_response)."""
    reward: str | None = None
    """Best-of-N scorer: a reward-model folder (or reward:DIR), or python:MODULE:FUNC."""
    judge: str | None = None
    """Best-of-N scorer: a judge spec (rules, openai:URL, lm:PATH); a pairwise judge scores a
    candidate by its share of wins against the others."""
    resume: bool = False
    """Keep the prompts already in --out (an interrupted run's, sampled with the same
    settings) and sample only the others. Their responses are valid samples, but not the
    ones an uninterrupted run would have drawn (batches are seeded by position)."""

    def __post_init__(self) -> None:
        check_at_least(self, 1, "n", "max_new_tokens", "batch_size", "limit")
        check_sampling(self.temperature, self.top_p)
        check_at_least(self, 1, "best_of")
        if self.best_of is not None and (self.reward is None) == (self.judge is None):
            raise PreflineError("--best-of needs one scorer: --reward or --judge", field="best_of")
        if self.best_of is None and (self.reward or self.judge):
            raise PreflineError("--reward/--judge score the candidates of --best-of N; give "
                                "--best-of", field="best_of")
        if self.judge is not None:
            parse_spec(self.judge)
        parse_backend(self.backend)
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
    resumed: int = 0
    """Prompts whose responses were already in ``out`` (``resume``) and were kept."""


def run(cfg: GenerateConfig, ctx: Context) -> GenerateResult:
    """Sample ``cfg.n`` responses per prompt (batched, KV cache, seeded) and write/store them.

    Fails before loading the model when the prompts are unreadable, the output folder is
    missing, or ``cfg.resume`` finds responses sampled with other settings. Interrupted
    (Ctrl-C, SIGTERM) or stopped by an error, it writes the prompts finished so far to
    ``cfg.out`` (``--resume`` continues from there), says so on stderr, and re-raises.
    """
    rows = read_prompts(cfg.prompts)[:cfg.limit]
    if not cfg.out.parent.exists():
        raise PreflineError(f"output folder {cfg.out.parent} does not exist", path=str(cfg.out),
                            field="out")
    kind, arg = parse_backend(cfg.backend)
    # the model an openai: server samples from is the one it names (URL#model), else --policy
    name = (kind == "openai" and arg.partition("#")[2]) or cfg.policy or DEFAULT_POLICY
    kept = _kept(cfg, rows, name) if cfg.resume else {}
    todo = [i for i in range(len(rows)) if i not in kept]
    with cpu_threads(cfg.threads):  # set before loading: it speeds up loading too
        backend = make_backend(cfg.backend, cfg.policy, device=ctx.device,
                               precision=cfg.precision, batch_size=cfg.batch_size, threads=None)
        params = {"n": cfg.n, "max_new_tokens": cfg.max_new_tokens,
                  "temperature": cfg.temperature, "top_p": cfg.top_p, "seed": cfg.seed,
                  "batch_size": cfg.batch_size, **_engine(backend)}
        for g in kept.values():
            _check_same(cfg, g, name, params)
        done: dict[int, list[str]] = {i: g.responses for i, g in kept.items()}
        sampling = Sampling(n=cfg.n, max_new_tokens=cfg.max_new_tokens,
                            temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed)
        tokens = 0
        start = time.perf_counter()
        try:
            with ctx.progress.bar(len(rows), "generating", start=len(kept)) as bar:
                for idx, comps in sample_in_batches(backend, [rows[i].prompt for i in todo],
                                                    sampling):
                    done.update((todo[j], [c.text for c in cs])
                                for j, cs in zip(idx, comps, strict=True))
                    tokens += sum(c.n_tokens for cs in comps for c in cs)
                    bar.advance(len(idx))
        except BaseException as exc:
            _keep_finished(cfg, rows, done, name, params, exc)
            raise
        seconds = time.perf_counter() - start
    gens = _generations(rows, done, name, params)
    write_jsonl(cfg.out, (generation_record(g) for g in gens))
    stored = store_generations(ctx.db, gens, actor="generate") if cfg.store else None
    return GenerateResult(prompts=len(gens), responses=sum(len(g.responses) for g in gens),
                          out=cfg.out, model=name, new_tokens=tokens, seconds=round(seconds, 2),
                          tokens_per_s=round(tokens / max(seconds, 1e-9), 1), gen_params=params,
                          stored=stored, resumed=len(kept))


def _engine(backend: Backend) -> dict[str, Any]:
    """What the generation settings record about the engine: the weights' dtype for ``hf``
    (as before backends existed, so older files resume), the backend for the others."""
    if isinstance(backend, HFBackend):
        return {"dtype": backend.dtype}
    return {"backend": backend.config()}


def _generations(rows: list[Generation], done: dict[int, list[str]], model: str,
                 params: dict[str, Any]) -> list[Generation]:
    """The finished prompts, in input order."""
    return [Generation(r.prompt, done[i], model, params, r.tags)
            for i, r in enumerate(rows) if i in done]


def _keep_finished(cfg: GenerateConfig, rows: list[Generation], done: dict[int, list[str]],
                   model: str, params: dict[str, Any], exc: BaseException) -> None:
    """Write the finished prompts to ``cfg.out`` (atomically: a valid file or none) and say
    what was kept: for an interrupt, in the line the command line prints; else on stderr."""
    if done:
        gens = _generations(rows, done, model, params)
        write_jsonl(cfg.out, (generation_record(g) for g in gens))
        unstored = ", not yet stored" if cfg.store else ""
        what = (f"kept {len(gens)} of {len(rows)} prompts ({sum(len(g.responses) for g in gens)}"
                f" responses) in {cfg.out}{unstored}")
    else:
        what = "before any prompt finished; nothing written"
    if isinstance(exc, interrupts.INTERRUPTS):
        interrupts.keep(interrupts.Kept(what, resume_flag="--resume" if done else None))
    elif done:
        notice(f"generate stopped by an error: {what}; rerun with --resume to sample the rest")


def _occurrence_keys(prompts: list[Messages]) -> list[tuple[str, int]]:
    """``(content hash, how many times it came before)`` per prompt: a prompt listed twice
    is two prompts."""
    seen: dict[str, int] = {}
    keys = []
    for p in prompts:
        key = prompt_key(p)
        keys.append((key, seen.get(key, 0)))
        seen[key] = seen.get(key, 0) + 1
    return keys


def _kept(cfg: GenerateConfig, rows: list[Generation], model: str) -> dict[int, Generation]:
    """Row index -> the generation ``cfg.out`` already holds for it (resume)."""
    if not cfg.out.exists():
        return {}
    previous = read_generations(cfg.out)
    have = dict(zip(_occurrence_keys([g.prompt for g in previous]), previous, strict=True))
    kept = {i: have[k] for i, k in enumerate(_occurrence_keys([r.prompt for r in rows]))
            if k in have}
    for g in kept.values():
        _check_same(cfg, g, model, None)
    return kept


def _check_same(cfg: GenerateConfig, g: Generation, model: str,
                params: dict[str, Any] | None) -> None:
    """Refuse to resume onto responses sampled by another model or with other settings
    (``params`` None: everything but the dtype, known only once the model is loaded)."""
    now = {"model": model, "n": cfg.n, "max_new_tokens": cfg.max_new_tokens,
           "temperature": cfg.temperature, "top_p": cfg.top_p, "seed": cfg.seed,
           "batch_size": cfg.batch_size, **(params or {})}
    then = {"model": g.model, **(g.gen_params or {})}
    differ = [f"{k}: {then.get(k)!r} there, {v!r} now" for k, v in now.items()
              if then.get(k) != v]
    if differ:
        raise PreflineError(f"cannot resume: its responses were sampled with other settings "
                            f"({'; '.join(differ)}); use the same settings or another --out",
                            path=str(cfg.out), field="resume")
