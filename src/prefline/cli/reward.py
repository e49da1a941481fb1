"""``prefline train reward`` and ``prefline eval reward``, derived from :class:`RewardConfig`
and :class:`RewardEvalConfig` (every setting is an option; ``prefline config show reward``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from prefline.cli.common import eval_app, train_app
from prefline.cli.options import artifact, run_stage, stage_command
from prefline.evaluate.reward_config import RewardEvalConfig
from prefline.registry import record_result
from prefline.store.context import Context
from prefline.train.reward_config import RewardConfig

if TYPE_CHECKING:
    from prefline.evaluate.reward import RewardEvalResult
    from prefline.train.reward import RewardResult


# What recording a trained reward model gives its summary: the model's artifact id, and its
# held-out evaluation with that evaluation's artifact id (None, None without a test split).
_Recorded = tuple[int, "RewardEvalResult | None", "int | None"]


def _train_body(cfg: RewardConfig, ctx: Context, *, as_json: bool) -> None:
    """Train, record, then evaluate once on the held-out test split and record that too."""
    from prefline.train import reward as reward_train  # torch: only when the command runs

    run_stage(reward_train.run, cfg, ctx, as_json=as_json, record=_record_with_heldout,
              summary=_train_summary, run_dir="reward")


def _record_with_heldout(ctx: Context, result: RewardResult,
                         cfg: RewardConfig) -> tuple[_Recorded, dict[str, Any]]:
    art_id = record_result(ctx.store, result, cfg)
    heldout, eval_id = _heldout(cfg, result, ctx)
    fields = {"artifact_id": art_id,
              "heldout": {**heldout.to_json(), "artifact_id": eval_id} if heldout else None}
    return (art_id, heldout, eval_id), fields


def _train_summary(result: RewardResult, recorded: _Recorded) -> Iterator[str]:
    art_id, heldout, eval_id = recorded
    yield from result.counts.lines()
    s, m = result.splits, result.metrics
    yield f"examples: train {s['train']}, val {s['val']}, test {s['test']} (held out)"
    if m.val_pairs:
        yield (f"validation: accuracy {m.val_accuracy:.3f} on {m.val_pairs} pairs; "
               f"temperature {m.temperature:.3g}; ECE {m.val_ece_before:.3f} -> "
               f"{m.val_ece_after:.3f}")
    if heldout is not None:
        yield f"held-out (test split): {_accuracy(heldout)}  (evaluation {eval_id})"
        yield from _segment_lines(heldout)
    if result.card.get("differential_privacy"):
        dp = result.card["differential_privacy"]
        yield (f"differential privacy: epsilon {dp['epsilon']:.3g} (target "
               f"{dp['target_epsilon']:g}), delta {dp['delta']:g}, {dp['scope']}")
    yield f"model: {result.path}  (artifact {art_id})"


def _heldout(cfg: RewardConfig, result: RewardResult,
             ctx: Context) -> tuple[RewardEvalResult | None, int | None]:
    """The model's held-out evaluation (``eval reward`` on its test split), when it has one."""
    from prefline.evaluate import reward as reward_eval  # torch: only when the command runs

    if not result.splits["test"]:
        return None, None
    ev, heldout, why = reward_eval.evaluate_heldout(
        result.path, snapshot=cfg.snapshot, data=cfg.data,
        ctx=ctx.with_run_dir(result.path / "heldout"))
    if heldout is None:
        typer.echo(f"no held-out evaluation: {why}", err=True)
        return None, None
    return heldout, record_result(ctx.store, heldout, ev)


def _segment_lines(result: RewardEvalResult) -> list[str]:
    from prefline.evaluate.reward_segments import table_lines

    return table_lines(result.segments) if result.segments else []


def _accuracy(result: RewardEvalResult) -> str:
    m = result.metrics
    lo, hi = m.accuracy_ci
    return (f"accuracy {m.accuracy:.3f} (95% CI {lo:.3f}-{hi:.3f}) on {m.n_pairs} pairs; "
            f"ECE {m.ece:.3f}")


def _eval_summary(result: RewardEvalResult, art_id: int) -> Iterator[str]:
    m = result.metrics
    yield f"{result.split} split: {_accuracy(result)}"
    yield from result.counts.lines()
    lb: dict[str, Any] = m.length_bias
    yield (f"chosen longer: {lb['accuracy_chosen_longer']:.3f}  chosen shorter: "
           f"{lb['accuracy_chosen_shorter']:.3f}")
    for name, probe in m.robustness.items():
        yield f"probe {name}: score rose for {probe['rose_fraction']:.0%}"
    yield from _segment_lines(result)
    if result.report is not None:
        yield f"report: {result.report}"
    yield f"evaluation: {result.path}  (artifact {art_id})"


def _eval_body(cfg: RewardEvalConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.evaluate import reward as reward_eval  # torch: only when the command runs

    run_stage(reward_eval.run, cfg, ctx, as_json=as_json, record=artifact(),
              summary=_eval_summary, run_dir="eval-reward")


stage_command(
    "reward", RewardConfig, _train_body, app=train_app, command="train reward",
    help="Train a reward model (Bradley-Terry on pairs, ties model, Plackett-Luce on "
         "rankings, regression on ratings; thumbs are counted and left out), then evaluate "
         "it on the held-out test split.",
    out_help="Run folder: the model, its checkpoints and the held-out evaluation "
             "(default: under the data dir).")
stage_command(
    "eval-reward", RewardEvalConfig, _eval_body, app=eval_app, command="eval reward",
    help="Pairwise accuracy with a 95% bootstrap CI, ECE, slices, length bias and "
         "robustness probes of a reward model (or ensemble).",
    out_help="Run folder for reward_eval.json (default: under the data dir).")


def register(app: typer.Typer) -> None:
    """Commands live in the shared train/eval groups."""

