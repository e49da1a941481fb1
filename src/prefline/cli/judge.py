"""``prefline judge``: label pairs of generated responses with an AI judge and store them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from prefline.cli.common import DbOption, JsonOption, print_json


def _options(path: Path | None) -> dict[str, Any]:
    from prefline.base.errors import PreflineError

    if path is None:
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PreflineError(f"cannot read judge options: {exc}", path=str(path)) from None
    if not isinstance(raw, dict):
        raise PreflineError("expected a JSON object of judge options", path=str(path))
    return raw


def judge_cmd(
    judge: Annotated[str, typer.Option("--judge", help="rules | rules:CONFIG.json | openai:URL[#model] | reward:DIR | lm:PATH")],
    in_file: Annotated[Path, typer.Option("--in", help="Output of `prefline generate` (prompt + responses per line).")],
    out: Annotated[Path, typer.Option("--out", help="Pairwise JSONL: prompt/chosen/rejected/tie/strength + rationale.")],
    pairs: Annotated[str, typer.Option("--pairs", help="all (every pair) | best-worst (one row per prompt).")] = "all",
    ties: Annotated[str, typer.Option("--ties", help="keep (rows with tie=true) | drop (from --out; always stored).")] = "keep",
    options: Annotated[Path | None, typer.Option("--judge-options", help="JSON object of extra judge settings (e.g. api_key_env, template, timeout).")] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Only write --out; do not store.")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Judge pairs of candidates with any judge; write pairwise JSONL and store ai_judge feedback."""
    from prefline.base.errors import PreflineError
    from prefline.base.progress import StepProgress
    from prefline.cli.generate import advance
    from prefline.generate.io import read_generations, write_jsonl
    from prefline.judges import make_judge
    from prefline.judges.label import candidate_pairs, label_generations, pair_record
    from prefline.judges.store import store_verdicts

    if ties not in ("keep", "drop"):
        raise PreflineError("expected keep or drop", field="ties")
    gens = read_generations(in_file)
    if not out.parent.exists():
        raise PreflineError(f"output folder {out.parent} does not exist", path=str(out))
    j = make_judge(judge, _options(options))
    total = sum(len(candidate_pairs(g.responses)) for g in gens)
    with StepProgress(total, enabled=not as_json, description=f"judging ({j.name})") as bar:
        judged, rows = label_generations(j, gens, pairs,
                                         on_done=advance(bar))
    keep = [p for _, p in rows if p.verdict.valid and (ties == "keep" or p.verdict.choice != "tie")]
    write_jsonl(out, (pair_record(j, p) for p in keep))
    counts = {c: sum(p.verdict.valid and p.verdict.choice == c for p in judged) for c in ("a", "b", "tie")}
    result: dict[str, Any] = {"judge": j.name, "pairs_judged": len(judged), "rows_written": len(keep),
                              "choices": counts, "invalid": sum(not p.verdict.valid for p in judged),
                              "out": str(out)}
    if not no_store:
        result["stored"] = store_verdicts(db, j, judged, actor="cli:judge")
    if as_json:
        print_json(result)
    else:
        typer.echo(f"{len(judged)} pairs judged by {j.name} ({counts['a']} a, {counts['b']} b, "
                   f"{counts['tie']} ties, {result['invalid']} unusable); {len(keep)} rows -> {out}")


def register(app: typer.Typer) -> None:
    app.command("judge")(judge_cmd)
