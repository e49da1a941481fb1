"""Retention: ``prefline store prune`` deletes feedback older than its source's retention
period, then what only that feedback kept (:func:`prefline.store.purge.purge`: snapshot
items copied from it, prompts and responses nothing else uses), and flags the snapshots
that lost items and the artifacts built from them ``contains_forgotten_data``.

The periods are a config (a TOML/YAML/JSON file given with ``--config``, or flags), not a
table: the policy is a reviewed file in version control, and the command that enforces it
(run from cron) says in its audit entry which periods it applied::

    default_days = 365          # sources no pattern matches (omit: kept forever)
    [retention_days]
    "api:*" = 30                # production feedback, by ingest key
    "campaign:*" = 730
    "hh.jsonl" = 3650           # an import, by its source name
    "served:*" = 14             # chats served by `prefline serve`, by flag

Rollout's log of served chats (``served_responses``: the user's prompt and the model's
answer) is pruned too, as source ``served:<flag>``. A source's period is the one of its
exact name, else of the longest glob pattern that matches it (``fnmatch``,
case-sensitive), else ``default_days``. Rows without a source get ``default_days``. Work
runs in batches of :data:`prefline.store.purge.CHUNK` rows, one transaction each (a stopped
prune leaves whole batches done; run it again to finish), under a progress bar.
``dry_run`` runs the same deletions and rolls them back, so its counts are exact.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from prefline.base.errors import PreflineError
from prefline.base.privacy import by_source
from prefline.base.stage import StageResult
from prefline.store.context import Context
from prefline.store.models import AuditLog, Feedback, utcnow
from prefline.store.purge import Purged, chunks, fold_wal, purge, zero_deleted
from prefline.store.rollout_models import ServedResponse

ACTION = "store.prune"
SERVED = "served:"
"""Served chats (rollout's log) are a source ``served:<flag>`` of their own."""


@dataclass(frozen=True)
class PruneConfig:
    """How long each feedback source is kept."""

    retention_days: dict[str, float] = field(default_factory=dict)
    """Days each source's rows are kept, by source name or glob pattern, e.g. {"api:*": 30,
    "served:*": 14} (a JSON object on the command line, a table in a file). Sources are
    feedback sources and served:<flag> for chats served by rollout."""
    default_days: float | None = None
    """Days for sources no name or pattern matches, and rows without a source (none: kept
    forever)."""
    dry_run: bool = False
    """Count what would be deleted (exactly: the deletions run and are rolled back)."""
    actor: str = "cli"
    """Who ran it, for the audit log."""

    def __post_init__(self) -> None:
        for key, days in {**self.retention_days, "default_days": self.default_days}.items():
            if days is not None and not days > 0:
                raise PreflineError(f"expected a positive number of days, got {days!r}",
                                    field=key if key == "default_days" else f"retention_days.{key}")
        if not self.retention_days and self.default_days is None:
            raise PreflineError("no retention period given: set retention_days (per source) "
                                "and/or default_days, e.g. in a file passed with --config",
                                field="retention_days")


@dataclass(frozen=True)
class PruneResult(StageResult):
    """What a prune deleted (or, with ``dry_run``, would delete)."""

    dry_run: bool
    cutoffs: dict[str, str | None]
    """Per source in the store: rows created before this UTC time expire (None: kept)."""
    expired_by_source: dict[str, int]
    """Expired rows per source: feedback rows, or served chats (``served:<flag>``)."""
    counts: dict[str, int]
    """Rows deleted per table (feedback, snapshot_items, prompts, responses, ...)."""
    snapshots: tuple[int, ...]
    """Snapshots that lost items, now ``contains_forgotten_data``."""
    artifacts: tuple[int, ...]
    """Artifacts built from them, now ``contains_forgotten_data``."""


def period(cfg: PruneConfig, source: str | None) -> float | None:
    """Days ``source`` is kept under ``cfg`` (None: forever)."""
    if source is None:
        return cfg.default_days
    days = by_source(cfg.retention_days, source)
    return cfg.default_days if days is None else days


Cutoffs = dict[str | None, dt.datetime | None]


def _cutoffs(conn: Connection, cfg: PruneConfig, now: dt.datetime) -> Cutoffs:
    """Per source in the store (feedback sources, and ``served:<flag>`` for served chats):
    rows created before this time expire (None: kept forever)."""
    sources = [s for (s,) in conn.execute(select(Feedback.source).distinct())]
    sources += [SERVED + f for (f,) in conn.execute(select(ServedResponse.flag).distinct())]
    out: Cutoffs = {}
    for source in sources:
        days = period(cfg, source)
        out[source] = None if days is None else now - dt.timedelta(days=days)
    return out


def _expired(conn: Connection, cutoffs: Cutoffs) -> tuple[dict[int, str], dict[int, str]]:
    """``{row id: source}`` of every expired feedback row and served chat."""
    feedback: dict[int, str] = {}
    served: dict[int, str] = {}
    for source, cutoff in cutoffs.items():
        if cutoff is None:
            continue
        if source is not None and source.startswith(SERVED):
            served.update({int(i): source for (i,) in conn.execute(select(ServedResponse.id).where(
                ServedResponse.flag == source[len(SERVED):], ServedResponse.created_at < cutoff))})
            continue
        same = Feedback.source.is_(None) if source is None else Feedback.source == source
        feedback.update({int(i): source or "-" for (i,) in conn.execute(
            select(Feedback.id).where(same, Feedback.created_at < cutoff))})
    return feedback, served


def _merge(total: Purged, part: Purged) -> None:
    total.counts.update(part.counts)
    total.snapshots |= part.snapshots
    total.artifacts |= part.artifacts


def _audit(conn: Connection, cfg: PruneConfig, result: PruneResult) -> None:
    conn.execute(AuditLog.__table__.insert().values(  # type: ignore[attr-defined]
        actor=cfg.actor, action=ACTION, target=None, created_at=utcnow(), details={
            "retention_days": cfg.retention_days, "default_days": cfg.default_days,
            "cutoffs": result.cutoffs, "counts": result.counts,
            "expired_by_source": result.expired_by_source,
            "snapshots": list(result.snapshots), "artifacts": list(result.artifacts)}))


def run(cfg: PruneConfig, ctx: Context) -> PruneResult:
    """Delete (or count, with ``dry_run``) the feedback past its source's retention period
    and what only it kept; returns the counts (module doc)."""
    engine = ctx.store.engine
    with engine.connect() as conn:
        cutoffs = _cutoffs(conn, cfg, utcnow())
        feedback, served = _expired(conn, cutoffs)
    total = Purged()
    # A dry run is one transaction, rolled back (no savepoints: pysqlite's are unreliable);
    # a real one commits batch by batch.
    with engine.connect() as conn, \
            ctx.progress.bar(len(feedback) + len(served), "pruning feedback") as bar:
        zero_deleted(conn)
        conn.commit()  # the pragma began a transaction; each batch begins its own
        outer = conn.begin() if cfg.dry_run else None
        batches: list[tuple[list[int], list[int]]] = [
            *((b, []) for b in chunks(feedback)), *(([], b) for b in chunks(served))]
        for fb_ids, served_ids in batches:
            with conn.begin() if outer is None else nullcontext():
                _merge(total, purge(conn, fb_ids, served_ids, reopen=False))
            bar.advance(len(fb_ids) + len(served_ids))
        result = _result(cfg, cutoffs, [*feedback.values(), *served.values()], total)
        if outer is not None:
            outer.rollback()
        elif batches:
            with conn.begin():
                _audit(conn, cfg, result)
    if batches and not cfg.dry_run:
        fold_wal(engine)
    return result


def _result(cfg: PruneConfig, cutoffs: Cutoffs, expired: list[str],
            total: Purged) -> PruneResult:
    stamp: dict[str, Any] = {source or "-": None if c is None else c.isoformat(timespec="seconds")
                             for source, c in sorted(cutoffs.items(), key=lambda kv: kv[0] or "")}
    return PruneResult(
        dry_run=cfg.dry_run, cutoffs=stamp,
        expired_by_source=dict(sorted(Counter(expired).items())),
        counts={k: int(v) for k, v in sorted(total.counts.items()) if v},
        snapshots=tuple(sorted(total.snapshots)), artifacts=tuple(sorted(total.artifacts)))
