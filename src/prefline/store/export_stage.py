"""The ``prefline export`` stage: a snapshot as TRL-compatible JSON Lines for one task.

``run(ExportConfig, Context) -> ExportResult``. The rows themselves come from
:func:`prefline.formats.export.task_rows` (one row shape per task); this stage picks the
snapshot's items, expands rankings into the pairs they imply for the dpo and reward tasks
(:func:`prefline.formats.load.ranking_pairs`, the one rankings→pairs rule), writes the
file atomically and says how many items of each kind were used or left out, and why.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from typing import Any, Literal

from prefline.base.errors import PreflineError
from prefline.base.stage import StageResult
from prefline.formats.examples import RankingExample
from prefline.formats.export import export_container, task_rows, write_rows
from prefline.formats.load import ranking_pairs
from prefline.store.context import Context
from prefline.store.snapshots import get_snapshot, item_example, snapshot_items

PAIR_TASKS = ("dpo", "reward")
"""Tasks whose rows are pairs; rankings are expanded for them. Not kto: unpairing a
ranking's pairs would label its middle responses both desirable and undesirable."""


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Settings of ``prefline export``."""

    out: str
    """File to write: .jsonl (JSON Lines) or .parquet (replaced atomically: a failure leaves
    no partial file; missing parent folders are created)."""
    task: Literal["dpo", "reward", "kto", "ranking"]
    """Row shape: dpo (prompt/chosen/rejected), reward (chosen/rejected with the prompt
    inside), kto (prompt/completion/label), ranking (prompt/responses/order)."""
    snapshot: str | None = None
    """Snapshot id, name or content-hash prefix (default: the latest)."""
    split: Literal["train", "test", "all"] = "all"
    """Which of the snapshot's splits to write."""
    style: Literal["conversational", "standard"] = "conversational"
    """conversational (chat-message lists, lossless) or standard (plain strings)."""

    def __post_init__(self) -> None:
        for name, allowed in (("task", ("dpo", "reward", "kto", "ranking")),
                              ("split", ("train", "test", "all")),
                              ("style", ("conversational", "standard"))):
            if getattr(self, name) not in allowed:
                raise PreflineError(f"unknown {name} {getattr(self, name)!r}; expected one of "
                                    f"{', '.join(allowed)}", field=name)
        if not str(self.out).strip():
            raise PreflineError("expected the path of the file to write", field="out")
        export_container(self.out)


@dataclasses.dataclass(frozen=True)
class ExportResult(StageResult):
    """What was written: rows, and per snapshot item kind what was used or left out."""

    out: str
    task: str
    split: str
    rows: int
    snapshot_id: int
    snapshot_hash: str
    used_by_kind: dict[str, int]
    """Snapshot items per kind that produced rows."""
    ignored_by_kind: dict[str, dict[str, int]]
    """Snapshot items per kind that produced no row, by reason."""
    pairs_from_rankings: int
    """Pairs implied by rankings (best first) written for the dpo and reward tasks."""


def _pairs_of(item: dict[str, Any]) -> list[dict[str, Any]]:
    """A ranking item as the pairwise items it implies, in the snapshot's item shape."""
    ranking = item_example("ranking", item["data"])
    assert isinstance(ranking, RankingExample)
    return [{"kind": "pairwise", "data": {"prompt": p.prompt, "chosen": p.chosen,
                                          "rejected": p.rejected, "tie": False}}
            for p in ranking_pairs(ranking)]


def _why_not(task: str, item: dict[str, Any]) -> str:
    if item["kind"] == "pairwise" and item["data"].get("tie"):
        return "tied pairs (no preference to learn)"
    return f"the {task} task has no use for {item['kind']} items"


def run(cfg: ExportConfig, ctx: Context) -> ExportResult:
    """Write snapshot ``cfg.snapshot`` for ``cfg.task`` to ``cfg.out``.

    Raises PreflineError when the snapshot holds nothing usable for the task.
    """
    snap = get_snapshot(cfg.snapshot, ctx.db)
    rows: list[dict[str, Any]] = []
    used: Counter[str] = Counter()
    ignored: dict[str, Counter[str]] = defaultdict(Counter)
    from_rankings = 0
    for item in snapshot_items(snap.id, cfg.split, ctx.db):
        as_pairs = item["kind"] == "ranking" and cfg.task in PAIR_TASKS
        expanded = _pairs_of(item) if as_pairs else [item]
        made = list(task_rows(cfg.task, expanded, cfg.style))
        if made:
            used[item["kind"]] += 1
            rows.extend(made)
            from_rankings += len(expanded) if as_pairs else 0
        else:
            ignored[item["kind"]][_why_not(cfg.task, item)] += 1
    if not rows:
        raise PreflineError(f"snapshot {snap.id} has no {cfg.split} items usable for task "
                            f"'{cfg.task}' (left out: {_plain(ignored)})", field="task")
    write_rows(cfg.out, rows)
    return ExportResult(out=str(cfg.out), task=cfg.task, split=cfg.split, rows=len(rows),
                        snapshot_id=snap.id, snapshot_hash=snap.content_hash,
                        used_by_kind=dict(used), ignored_by_kind=_plain(ignored),
                        pairs_from_rankings=from_rankings)


def _plain(counts: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    return {k: dict(v) for k, v in sorted(counts.items())}
