"""``prefline generate``: sample K responses per prompt from a policy and store them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from prefline.cli.common import DbOption, JsonOption, bench_app, print_json


def advance(bar: Any) -> Callable[[int], None]:
    """A callback that moves a StepProgress bar on by k items."""
    def step(k: int) -> None:
        for _ in range(k):
            bar.update({})
    return step


def generate_cmd(
    prompts: Annotated[Path, typer.Option("--prompts", help="JSONL with 'prompt' (+ tags/category) or one prompt per line.")],
    out: Annotated[Path, typer.Option("--out", help="Output JSONL: one line per prompt with its responses.")],
    policy: Annotated[str | None, typer.Option("--policy", help="Model folder, .gguf file or Hub id (default: embedded SmolLM2-135M-Instruct).")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Responses per prompt.")] = 4,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 192,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="0 = greedy.")] = 0.8,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0)] = 0.95,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Sequences per generate call.")] = 32,
    precision: Annotated[str, typer.Option("--precision", help="auto | bf16 | fp32 (weights).")] = "auto",
    threads: Annotated[int, typer.Option("--threads", min=0, help="Torch threads; 0 = the cores not already busy.")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N prompts.")] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Only write --out; do not store.")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sample --n responses per prompt (batched, KV cache, seeded) and store them."""
    import time

    import torch

    from prefline.base.progress import StepProgress
    from prefline.generate.io import generation_record, read_prompts, write_jsonl
    from prefline.generate.sampling import auto_threads, count_new_tokens, generate, load_policy
    from prefline.generate.store import Generation, store_generations
    from prefline.models.embedded import DEFAULT_POLICY

    rows = read_prompts(prompts)[:limit]
    if not out.parent.exists():
        from prefline.base.errors import PreflineError

        raise PreflineError(f"output folder {out.parent} does not exist", path=str(out))
    torch.set_num_threads(threads or auto_threads())  # also speeds up loading
    model, tok = load_policy(policy, precision)
    params = {"n": n, "max_new_tokens": max_new_tokens, "temperature": temperature,
              "top_p": top_p, "seed": seed, "batch_size": batch_size,
              "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
    start = time.perf_counter()
    with StepProgress(len(rows), enabled=not as_json, description="generating") as bar:
        texts = generate(model, tok, [r.prompt for r in rows], n=n, max_new_tokens=max_new_tokens,
                         temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                         threads=None, on_batch=advance(bar))
    seconds = time.perf_counter() - start
    name = policy or DEFAULT_POLICY
    gens = [Generation(r.prompt, t, name, params, r.tags) for r, t in zip(rows, texts, strict=True)]
    write_jsonl(out, (generation_record(g) for g in gens))
    tokens = count_new_tokens(tok, texts)
    result = {"prompts": len(gens), "responses": sum(len(t) for t in texts), "out": str(out),
              "new_tokens": tokens, "seconds": round(seconds, 2),
              "tokens_per_s": round(tokens / max(seconds, 1e-9), 1)}
    if not no_store:
        result["stored"] = store_generations(db, gens, actor="cli:generate")
    if as_json:
        print_json(result)
    else:
        typer.echo(f"{result['responses']} responses for {result['prompts']} prompts -> {out} "
                   f"({result['tokens_per_s']} new tokens/s)")


@bench_app.command("generate")
def bench_generate_cmd(
    policy: Annotated[str | None, typer.Option("--policy", help="Default: embedded SmolLM2-135M-Instruct.")] = None,
    prompts: Annotated[int, typer.Option("--prompts", min=1)] = 4,
    n: Annotated[int, typer.Option("--n", min=1)] = 4,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 48,
    as_json: JsonOption = False,
) -> None:
    """Generation throughput (new tokens/s) across dtype, batch size and thread settings."""
    from prefline.generate.bench_generation import bench_generation

    def show(r: dict[str, Any]) -> None:
        if not as_json:
            typer.echo(f"{r['dtype']:<9} {r['batch_size']:>5}  {r['threads']:>7}  {r['seconds']:>7}  "
                       f"{r['new_tokens']:>10}  {r['tokens_per_s']:>8}")

    if not as_json:
        typer.echo("dtype     batch  threads  seconds  new_tokens  tokens/s")
    rows = bench_generation(policy, prompts, n, max_new_tokens, on_result=show)
    if as_json:
        print_json(rows)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)
