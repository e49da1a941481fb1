"""``prefline train personal-dpo``: derived from
:class:`~prefline.train.personal_config.PersonalDPOConfig`.

The DPO settings are the same options as ``prefline train dpo`` (``--snapshot``, ``--lr``,
``--beta``...), plus ``--segment-key``, ``--min-pairs`` and ``--min-group-size``. The body
trains the global and per-segment adapters, records the folder as one policy and prints one
line per adapter (segments below min_group_size are only counted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from prefline.cli.common import train_app
from prefline.cli.options import artifact, run_stage, stage_command
from prefline.store.context import Context
from prefline.train.personal_config import PersonalDPOConfig

if TYPE_CHECKING:
    from prefline.train.personal_dpo import PersonalDPOResult


def _accuracy(measured: dict[str, object]) -> str:
    held = measured.get("heldout") or measured.get("val")
    return f", held-out accuracy {held['accuracy']:.3f}" if isinstance(held, dict) else ""


def _summary(result: PersonalDPOResult, art_id: int) -> list[str]:
    m, key = result.metrics, result.segment_key
    lines = [f"global: {m['global']['pairs']} pairs{_accuracy(m['global'])}"]
    for value, seg in m["segments"].items():
        if seg.get("adapter"):
            lines.append(f"{key}={value}: {seg['pairs']} pairs{_accuracy(seg)}")
        else:
            lines.append(f"{key}={value}: {seg['fallback']}")
    lines += [f"note: {note}" for note in result.notes]
    return lines + [f"personal policy: {result.path}  (artifact {art_id}; prefline serve "
                    f"routes on the request's {key})"]


def _body(cfg: PersonalDPOConfig, ctx: Context, *, as_json: bool) -> None:
    from prefline.train.personal_dpo import run

    run_stage(run, cfg, ctx, as_json=as_json, record=artifact(f"personal-dpo-{cfg.segment_key}"),
              summary=_summary, run_dir="personal-dpo")


stage_command(
    "personal-dpo", PersonalDPOConfig, _body, app=train_app, command="train personal-dpo",
    help="Train personalised policies: a LoRA adapter per value of a segment attribute "
         "(--segment-key) with DPO on that segment's pairs, and a global adapter on all "
         "pairs that serves segments below --min-pairs. Give --snapshot ID or --data FILE.",
    out_help="Run folder: manifest.json, global/ and segments/<value>/ (each a DPO run with "
             "its adapter) (default: <data dir>/runs/personal-dpo-<time>).")


def register(app: typer.Typer) -> None:
    """The command is added to the shared train group at import time."""
