"""``prefline bench dpo|reward|ingest|audit|collect|generate``: every benchmark, one harness.

Each command's options are its benchmark config's settings (help = the field's docstring,
via :func:`prefline.cli.options.setting_params`) plus what every benchmark shares:
``--reps`` (interleaved repetitions), ``--threads``, ``--json`` and, where a peer exists,
``--against``. The measuring lives in :mod:`prefline.bench`; see docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Annotated, Any

import typer

from prefline.base import config
from prefline.cli.common import bench_app, print_json
from prefline.cli.options import setting_params

_KW = inspect.Parameter.KEYWORD_ONLY


def _shared(peer: str | None) -> list[inspect.Parameter]:
    specs: list[tuple[str, Any, Any]] = [
        ("reps", Annotated[int, typer.Option(
            "--reps", min=1, help="Interleaved repetitions of every side (prefline, peer, "
                                  "prefline, peer, ...); medians with min/max are reported.")], 3),
        ("threads", Annotated[int | None, typer.Option(
            "--threads", min=1, help="torch/OpenMP threads in every run (default: torch's, "
                                     "one per core).")], None),
        ("as_json", Annotated[bool, typer.Option(
            "--json", help="Print the whole result as JSON (and no progress lines).")], False),
    ]
    if peer:
        specs.insert(0, ("against", Annotated[str, typer.Option(
            "--against", help=f"Peer to run against: {peer} (its default and its fastest "
                              f"setting), {peer}:default or {peer}:fastest (one of them), or "
                              "none (prefline only).")], peer))
    return [inspect.Parameter(n, _KW, default=d, annotation=h) for n, h, d in specs]


def bench_command(name: str, module: str, help: str, peer: str | None = None) -> None:
    """Add ``prefline bench <name>`` for ``prefline.bench.<module>.BENCH`` to ``bench_app``."""
    bench = importlib.import_module(f"prefline.bench.{module}").BENCH
    params = setting_params(bench.config)
    keys = {p.name: s.key for p, s in zip(params, config.settings(bench.config), strict=True)}

    def callback(**kw: Any) -> None:
        from prefline.bench import harness

        values = {keys[k]: v for k, v in kw.items() if k in keys and v is not None}
        cfg = config.build(bench.config, values, command=f"bench {name}")
        result = harness.run(bench, cfg, against=kw.get("against"), reps=kw["reps"],
                             threads=kw["threads"], progress=not kw["as_json"])
        if kw["as_json"]:
            print_json(result)
        else:
            typer.echo(harness.render(result))

    callback.__signature__ = inspect.Signature([*params, *_shared(peer)])  # type: ignore[attr-defined]
    callback.__doc__ = help
    bench_app.command(name)(callback)


bench_command("dpo", "dpo", "prefline's DPO step vs TRL's DPOTrainer: pairs/s, peak RSS, MFU "
              "(SmolLM2-135M, 8 HH pairs per step, max length 256).", peer="trl")
bench_command("grpo", "grpo", "prefline's GRPO step (generation + update) vs TRL's GRPOTrainer: "
              "samples/s, peak RSS (SmolLM2-135M, 4 prompts x 4 completions of <= 64 "
              "tokens, the same Python reward and KL settings).", peer="trl")
bench_command("reward", "reward", "prefline's reward-model training vs TRL's RewardTrainer: "
              "pairs/s, peak RSS, held-out accuracy (all-MiniLM-L6-v2, HH pairs).", peer="trl")
bench_command("ingest", "ingest", "Import N generated pairwise records into fresh SQLite and "
              "PostgreSQL stores: records/s per backend.")
bench_command("audit", "audit", "Fill a fresh SQLite store with N synthetic events and time "
              "the audit of the store and of its snapshot (budget: 30 s).")
bench_command("collect", "collect", "The HTTP ingest API under load: batched events/s, "
              "single-event latency at many clients, stored == acknowledged.")
bench_command("generate", "generation", "Generation throughput (new tokens/s) of the "
              "optimised decode path vs main's original one (--against main), at the demo's "
              "settings (SmolLM2-135M, 64 prompts x 4 samples, <= 48 new tokens, bf16, 256 "
              "per call) or given dtype:batch:threads settings.", peer="main")


def register(app: typer.Typer) -> None:
    """Commands live on ``bench_app``, mounted by ``prefline.cli``."""
