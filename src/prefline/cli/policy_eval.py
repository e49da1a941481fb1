"""``prefline eval policy``: win rate, KL, length, diversity and refusals of A against B."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import JsonOption, eval_app, print_json

BUNDLED = "bundled:eval"


def read_prompt_file(path: str) -> list[dict[str, Any]]:
    """Rows ``{"id", "prompt", "category"}`` from a JSONL file, or the bundled eval split.

    Each line is a JSON object with ``prompt`` (text or chat messages) and optionally ``id``
    and ``category``; a bare JSON string is a prompt too. ``bundled:eval`` (or
    ``bundled:train``) selects the prompt set shipped with prefline.
    """
    if path.startswith("bundled:"):
        from prefline.data import load_prompts

        return load_prompts(path.split(":", 1)[1])
    file = Path(path)
    if not file.is_file():
        raise PreflineError("prompt file not found", path=path)
    rows = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PreflineError(f"not valid JSON ({exc.msg})", path=path, line=n) from None
        if isinstance(obj, str):
            obj = {"prompt": obj}
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str | list) or not obj["prompt"]:
            raise PreflineError("expected an object with a non-empty 'prompt' (text or messages)",
                                path=path, line=n, field="prompt")
        rows.append({"id": str(obj.get("id", n)), "prompt": obj["prompt"],
                     "category": obj.get("category")})
    if not rows:
        raise PreflineError("no prompts in file", path=path)
    return rows


@eval_app.command("policy")
def eval_policy_cmd(
    policy: Annotated[str, typer.Option("--policy", help="Policy A: folder, Hub id, .gguf or 'default'.")],
    baseline: Annotated[str, typer.Option("--baseline", help="Baseline B (same forms as --policy).")],
    prompts: Annotated[str, typer.Option("--prompts", help=f"JSONL of prompts, or {BUNDLED}.")],
    judge: Annotated[str, typer.Option("--judge", help="rules | rules:CONFIG.json | openai:URL | reward:DIR")] = "rules",
    reward: Annotated[str | None, typer.Option("--reward", help="Reward model folder for the proxy win rate.")] = None,
    n_samples: Annotated[int, typer.Option("--n-samples", min=1, help="Responses per prompt per policy.")] = 1,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 64,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0)] = 0.7,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    report: Annotated[Path | None, typer.Option("--report", help="Write an HTML report here.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Compare policy A with baseline B on held-out prompts under a judge (ties count half)."""
    from prefline.evaluate.policy import SamplingConfig, evaluate_policy
    from prefline.judges import make_judge

    rows = read_prompt_file(prompts)
    the_judge = make_judge(judge)
    proxy = None
    if reward:
        from prefline.models.reward import RewardModel

        proxy = RewardModel.load(reward)
    cfg = SamplingConfig(n_samples=n_samples, max_new_tokens=max_new_tokens,
                         temperature=temperature, seed=seed)
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("evaluating") as status:
        result = evaluate_policy(
            policy, baseline, rows, the_judge, proxy, sampling=cfg,
            progress=lambda stage, done, total: status.update(f"evaluating: {stage}"))
    result["policy_path"], result["baseline_path"] = policy, baseline
    if report is not None:
        from prefline.evaluate.policy_report import write_policy_report

        write_policy_report(result, report)
    if json_out:
        print_json(result)
        return
    _print_summary(result)


def _print_summary(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    j = result["judge"]
    table = Table(title=f"policy vs baseline on {result['n_prompts']} prompts")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("judge win rate", f"{j['win_rate']:.1%} [{j['ci'][0]:.1%}, {j['ci'][1]:.1%}]")
    table.add_row("length-controlled win rate", f"{j['length_controlled_win_rate']:.1%}")
    if "proxy" in result:
        p = result["proxy"]
        table.add_row("proxy (reward model) win rate", f"{p['win_rate']:.1%} [{p['ci'][0]:.1%}, {p['ci'][1]:.1%}]")
    table.add_row("KL(policy‖baseline), nats/response", f"{result['kl']:.3f}")
    for side in ("policy", "baseline"):
        s = result[side]
        table.add_row(f"{side}: mean length (words)", f"{s['mean_length_words']:.1f}")
        table.add_row(f"{side}: distinct-1 / distinct-2", f"{s['distinct_1']:.3f} / {s['distinct_2']:.3f}")
    out = Console()
    out.print(table)
    out.print(result["verdict"]["text"])


def register(app: typer.Typer) -> None:
    """Commands are added to the shared ``eval`` group above; nothing else to mount."""
