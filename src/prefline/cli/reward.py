"""``prefline train reward`` and ``prefline eval reward`` (``prefline bench reward`` lives in
``prefline.cli.bench``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import (
    DbOption,
    JsonOption,
    default_run_dir,
    eval_app,
    parse_overrides,
    print_json,
    read_config,
    train_app,
)


@train_app.command(
    "reward", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_reward_cmd(
    ctx: typer.Context,
    data: Annotated[str | None, typer.Option("--data", help="Pairs/rankings/ratings file.")] = None,
    snapshot: Annotated[str | None, typer.Option("--snapshot", help="Store snapshot id, name or hash.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Backbone hub id or folder (default: embedded all-MiniLM-L6-v2).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="JSON or TOML settings file.")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Output folder (default: under the data dir).")] = None,
    ensemble: Annotated[int | None, typer.Option("--ensemble", help="Number of ensemble members.")] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--full", help="LoRA adapters or full fine-tuning.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a reward model (Bradley-Terry; ties, rankings and ratings used when present).

    Extra `key=value` or `--key value` pairs set any RewardTrainConfig field or engine
    setting, e.g. `epochs=3 lr=1e-4 batch_size=16 max_length=256 ensemble_mode=bootstrap`.
    """
    from prefline.train.reward import config_from, train_reward

    raw: dict[str, Any] = read_config(config, sections=("reward", "train"))
    raw.update(parse_overrides(ctx.args))
    flags = {"data": data, "snapshot": snapshot, "model": model, "out": out,
             "ensemble": ensemble, "lora": lora, "db": db}
    raw.update({k: v for k, v in flags.items() if v is not None})
    raw.setdefault("out", default_run_dir("reward"))
    if as_json:
        raw["progress"] = "false"
    art = train_reward(config_from(raw))
    summary = {"model": str(art.path), "artifact_id": art.artifact_id, **art.metrics}
    if as_json:
        print_json(summary)
        return
    acc, ci = art.metrics.get("test_accuracy"), art.metrics.get("test_accuracy_ci")
    if acc is not None and ci:
        typer.echo(f"held-out accuracy {acc:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}) on "
                   f"{art.metrics['test_n_pairs']} pairs")
    typer.echo(f"temperature {art.metrics['temperature']:.3g}; validation ECE "
               f"{art.metrics['val_ece_before']:.3f} -> {art.metrics['val_ece_after']:.3f}")
    typer.echo(f"model: {art.path}  (artifact {art.artifact_id})")


def _eval_data(data: str | None, snapshot: str | None, db: str | None,
               rewardbench: bool) -> tuple[list[Any], list[Any]]:
    """(pairs, ratings) from a file (rankings expand to pairs) or a snapshot's test split."""
    from prefline.formats.examples import PreferencePair, RankingExample, RatingExample
    from prefline.formats.load import ranking_pairs

    if (data is None) == (snapshot is None):
        raise PreflineError("give exactly one of --data FILE or --snapshot ID", field="data")
    if rewardbench:
        from prefline.evaluate.reward import load_rewardbench

        return load_rewardbench(str(data)), []
    if data is not None:
        from prefline.train.reward_data import load_reward_examples

        examples, _ = load_reward_examples(data, None)
    else:
        from prefline.train.reward_data import snapshot_data

        examples, _ = snapshot_data(str(snapshot), "test", db)
    pairs: list[Any] = []
    for ex in examples:
        if isinstance(ex, PreferencePair):
            pairs.append(ex)
        elif isinstance(ex, RankingExample):
            pairs.extend(ranking_pairs(ex))
    if not pairs:
        raise PreflineError("no preference pairs to evaluate", path=data)
    return pairs, [ex for ex in examples if isinstance(ex, RatingExample)]


def _held_out(pairs: list[Any], card: dict[str, Any], split: str) -> list[Any]:
    """The ``split`` part of ``pairs`` under the model's own training split settings."""
    from prefline.train.reward_data import split_by_prompt

    if split not in ("test", "val"):
        raise PreflineError("--split must be all, test or val", field="split")
    cfg = card.get("config") or {}
    seed = int((cfg.get("train") or {}).get("seed", 0))
    _, val, test = split_by_prompt(pairs, float(cfg.get("val_fraction", 0.1)),
                                   float(cfg.get("test_fraction", 0.1)), seed)
    chosen = test if split == "test" else val
    if not chosen:
        raise PreflineError(f"no pairs fall in the model's {split} split", field="split")
    return chosen


@eval_app.command("reward")
def eval_reward_cmd(
    model: Annotated[str, typer.Option("--model", help="Saved reward model (or ensemble) folder.")],
    data: Annotated[str | None, typer.Option("--data", help="Pairs file (ratings used when present).")] = None,
    snapshot: Annotated[str | None, typer.Option("--snapshot", help="Snapshot id (its test split).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write an HTML report here.")] = None,
    rewardbench: Annotated[bool, typer.Option("--rewardbench", help="--data holds RewardBench rows (prompt/chosen/rejected/subset).")] = False,
    probes: Annotated[int, typer.Option("--probes", help="Pairs used by the robustness probes (0: skip).")] = 100,
    split: Annotated[str, typer.Option("--split", help="all | test | val: with --data, keep only the model's held-out split (same prompt-grouped split as training).")] = "all",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pairwise accuracy with a 95% bootstrap CI, ECE, slices, length bias and probes."""
    from prefline.evaluate.reward import evaluate_reward
    from prefline.evaluate.reward import rewardbench as run_rewardbench
    from prefline.models.ensemble import load_reward_model

    pairs, ratings = _eval_data(data, snapshot, db, rewardbench)
    scorer = load_reward_model(model)
    if split != "all":
        pairs = _held_out(pairs, scorer.card, split)
    result = evaluate_reward(scorer, pairs, ratings, probes=probes)
    if rewardbench:
        result["rewardbench"] = run_rewardbench(scorer, pairs)
    result["model"] = model
    if report is not None:
        from prefline.evaluate.reward_report import write_report

        write_report(result, report, title=f"Reward model {Path(model).name}")
        result["report"] = str(report)
    plots = result.pop("_plots")
    del plots
    if as_json:
        print_json(result)
        return
    lo, hi = result["accuracy_ci"]
    typer.echo(f"accuracy {result['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}) on "
               f"{result['n_pairs']} pairs; ECE {result['ece']:.3f}")
    lb = result["length_bias"]
    typer.echo(f"chosen longer: {lb['accuracy_chosen_longer']:.3f}  chosen shorter: "
               f"{lb['accuracy_chosen_shorter']:.3f}")
    for name, probe in result["robustness"].items():
        typer.echo(f"probe {name}: score rose for {probe['rose_fraction']:.0%}")
    if report is not None:
        typer.echo(f"report: {report}")


def register(app: typer.Typer) -> None:
    """Commands live in the shared train/eval groups."""
