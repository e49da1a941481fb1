"""``prefline train dpo``: derived from :class:`~prefline.train.policy_config.DPOConfig`.

Every DPOConfig and TrainConfig setting is an option (``--beta``, ``--lr``, ...), and can
come from ``--config FILE`` or a trailing ``key=value``. The body runs the stage, records
the policy in the registry and prints what it trained on. Under torchrun every rank trains;
only rank 0 records and prints. (``prefline bench dpo`` lives in ``prefline.cli.bench``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from prefline.cli.common import train_app
from prefline.cli.options import artifact, run_stage, stage_command
from prefline.store.context import Context
from prefline.train.policy_config import DPOConfig
from prefline.train.policy_data import FeedbackUse

if TYPE_CHECKING:
    from prefline.train.dpo import DPOResult


def _summary(result: DPOResult, art_id: int) -> list[str]:
    ex, m = result.counts["examples"], result.metrics
    unit = "examples" if result.loss == "kto" else "pairs"
    lines = [f"trained {result.loss} for {result.steps} steps on {ex['train']} {unit} "
             f"({ex['val']} val, {ex['heldout']} held out)"]
    use = FeedbackUse(result.counts["used"], result.counts["ignored"])
    lines += ["  " + line for line in use.lines()]
    for name in ("val", "heldout"):
        if m.get(name):
            lines.append(f"{name} implicit-reward accuracy {m[name]['accuracy']:.3f}, "
                         f"margin {m[name]['margin']:.3f}")
    lines += [f"note: {note}" for note in result.notes]
    return lines + [f"policy: {Path(result.path)}  (artifact {art_id})"]


def _body(cfg: DPOConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.train.dpo import run

    run_stage(run, cfg, ctx, as_json=as_json, record=artifact(f"dpo-{cfg.loss}"),
              summary=_summary, run_dir="dpo")


stage_command(
    "dpo", DPOConfig, _body, app=train_app, command="train dpo",
    help="Train a policy on preferences: DPO (or IPO, cDPO, rDPO, hinge, SimPO, ORPO) on pairs "
         "and rankings, or KTO (loss=kto) on thumbs and split pairs. Give --snapshot ID or "
         "--data FILE.",
    out_help="Run folder: checkpoints, train_log.jsonl, the exported policy (default: "
             "<data dir>/runs/dpo-<time>).")


def register(app: typer.Typer) -> None:
    """The command is added to the shared train group at import time."""
