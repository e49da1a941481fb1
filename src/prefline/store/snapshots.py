"""Snapshots: frozen, content-hashed training sets built from the store's feedback.

``run(SnapshotConfig, Context)`` is the ``prefline snapshot create`` stage. It selects
feedback (source, prompt tag, annotator kind, time range, feedback kinds), turns each kind
into items (:mod:`prefline.store.feedback_items`: a consensus per judged pair, majority or
Bradley-Terry with an explicit ties policy; thumbs by majority; ratings averaged; rankings
as given; implicit signals mapped to binary labels by a rule, only when asked for), splits
train/test by prompt (:func:`prefline.base.splits.split_of`: a prompt's hash decides, so no
prompt is in both and adding data never moves a prompt), and stores the items. The content
hash covers the items only (split, kind, content; never database ids, names or the
recipe), so it changes if and only if the training content changes, on SQLite and
PostgreSQL alike.

Personal data (issue 14): ``--segment KEY=VALUE`` keeps feedback of that segment; a
snapshot's ``purpose`` (training or evaluation) keeps only feedback whose user consented
to it (:mod:`prefline.store.consent`), and its stats count what consent left out (records
and users, by reason) and the items per segment value.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, exists, false, func, insert, select, update
from sqlalchemy.engine import Connection

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.base.splits import split_of
from prefline.base.stage import StageResult, jsonable
from prefline.base.text import check_json
from prefline.formats.examples import (
    PreferencePair,
    RankingExample,
    RatingExample,
    UnpairedExample,
)
from prefline.formats.records import Example
from prefline.store.bulk import dumps, insert_ignore
from prefline.store.consent import screen
from prefline.store.context import Context, Store
from prefline.store.db import open_store, session_scope
from prefline.store.feedback_items import (
    Items,
    binary_items,
    implicit_items,
    pairwise_items,
    ranking_items,
    rating_items,
)
from prefline.store.models import (
    FEEDBACK_KINDS,
    Annotator,
    AuditLog,
    Feedback,
    Prompt,
    Response,
    Snapshot,
    SnapshotItem,
    SnapshotName,
    utcnow,
)
from prefline.store.segments import segment_counts, segment_matches
from prefline.store.snapshot_config import DEFAULT_KINDS, Filters, SnapshotConfig

__all__ = [
    "DEFAULT_KINDS", "Filters", "SnapshotConfig", "SnapshotResult", "SnapshotStats", "create_snapshot",
    "get_snapshot", "item_example", "list_snapshots", "run", "snapshot_examples",
    "snapshot_items",
]

SPLITS = ("train", "test", "all")
_ITEM_COLS = ("snapshot_id", "position", "split", "kind", "prompt_id", "data")
UNSELECTED = "records of an unselected kind"
_Q = TypeVar("_Q", bound=Select)


@dataclasses.dataclass(frozen=True)
class SnapshotStats:
    """How a snapshot was made from the feedback, kind by kind (stored as its ``stats``)."""

    feedback: int
    """Feedback records of the selected kinds that matched the filters (and consent allows)."""
    items: int
    prompts: int
    counts: dict[str, int]
    """Items per ``"<stored kind>/<split>"``, e.g. ``"pairwise/train"`` (implicit-derived
    items are stored as binary)."""
    feedback_by_kind: dict[str, int]
    """Records that matched the filters, per feedback kind (selected or not)."""
    items_by_kind: dict[str, int]
    """Items per feedback kind they came from (``implicit``: binary items mapped from
    implicit signals)."""
    dropped: dict[str, dict[str, int]]
    """Per feedback kind, what was left out and why (each reason names its unit)."""
    ties_dropped: int
    """Pairs left out because their consensus is a tie (``ties=drop``)."""
    purpose: str = "training"
    """What the snapshot is for (training or evaluation): consent was checked for it."""
    excluded: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    """What consent left out: ``{"records": {reason: n}, "users": {reason: n}}``."""
    segments: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    """Items per value of each segment key, ``{key: {value: n}}`` (every count; printed
    reports suppress groups below ``min_group_size``)."""

    def by_split(self) -> dict[str, dict[str, int]]:
        """``counts`` as ``{stored kind: {split: items}}``."""
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for key, n in sorted(self.counts.items()):
            kind, split = key.split("/")
            out[kind][split] = n
        return dict(out)


@dataclasses.dataclass(frozen=True)
class SnapshotResult(StageResult):
    """What ``snapshot create`` made; ``stats`` describe this build (and are stored with
    the snapshot unless ``reused``)."""

    id: int
    name: str | None
    content_hash: str
    reused: bool
    """True when a snapshot with this content hash existed: it is returned, not copied."""
    recipe: dict[str, Any]
    """The settings it was built with (filters, kinds, aggregation, ties, split, implicit
    rule); not part of the content hash."""
    stats: SnapshotStats


def not_superseded() -> ColumnElement[bool]:
    """Feedback rows no later row replaces (an annotator's edit keeps both rows, for the
    audit trail; only the newest is a vote)."""
    newer = Feedback.__table__.alias("newer")
    return ~exists().where(newer.c.supersedes_id == Feedback.__table__.c.id)


def _where(q: _Q, f: Filters) -> _Q:
    """``q`` joined with prompts and annotators and restricted by ``f`` (tags aside);
    superseded labels are left out."""
    q = q.join(Prompt, Prompt.id == Feedback.prompt_id).join(
        Annotator, Annotator.id == Feedback.annotator_id).where(not_superseded())
    since, until = f.window()
    if f.source:
        q = q.where(Feedback.source == f.source)
    if f.annotator_kind:
        q = q.where(Annotator.kind == f.annotator_kind)
    if since:
        q = q.where(Feedback.created_at >= since)
    if until:
        q = q.where(Feedback.created_at < until)
    return q


def _json_filtered(rows: list[Any], f: Filters) -> list[Any]:
    """Rows whose prompt tags and segment match ``f``: both are JSON, so they are
    filtered here, portable across backends."""
    wanted = f.segment_filter()
    return [r for r in rows if (not f.tag or f.tag in (r.tags or []))
            and (not wanted or segment_matches(r.segment, wanted))]


def _feedback_rows(conn: Connection, f: Filters, kinds: tuple[str, ...]) -> list[Any]:
    q = _where(select(Feedback.id, Feedback.kind, Feedback.annotator_id, Feedback.prompt_id,
                      Feedback.response_a_id, Feedback.response_b_id, Feedback.response_id,
                      Feedback.choice, Feedback.payload, Feedback.user_id, Feedback.segment,
                      Prompt.content_hash, Prompt.messages, Prompt.text, Prompt.tags), f)
    return _json_filtered(list(conn.execute(q.where(Feedback.kind.in_(kinds))
                                            .order_by(Feedback.id))), f)


def _kind_counts(conn: Connection, f: Filters) -> dict[str, int]:
    """Records matching the filters per kind, selected or not (so a snapshot can say what
    it left out)."""
    if not f.tag and not f.segment:
        q = _where(select(Feedback.kind, func.count(Feedback.id)), f).group_by(Feedback.kind)
        found: dict[str, int] = {str(k): int(n) for k, n in conn.execute(q).all()}
    else:
        rows = list(conn.execute(_where(select(Feedback.kind, Prompt.tags, Feedback.segment), f)))
        found = Counter(str(r.kind) for r in _json_filtered(rows, f))
    return {k: int(found.get(k, 0)) for k in FEEDBACK_KINDS}


def _texts(conn: Connection, rows: list[Any]) -> dict[int, str]:
    ids: set[int] = set()
    for r in rows:
        ids.update(i for i in (r.response_a_id, r.response_b_id, r.response_id) if i)
        if r.kind == "ranking":
            ids.update(r.payload.get("order", []))
    out: dict[int, str] = {}
    ordered = sorted(ids)
    for i in range(0, len(ordered), 5000):
        chunk = ordered[i:i + 5000]
        out.update(conn.execute(select(Response.id, Response.text).where(Response.id.in_(chunk))).all())
    return out


def _kind_items(rows: list[Any], texts: dict[int, str],
                cfg: SnapshotConfig) -> tuple[dict[str, Items], dict[str, Counter[str]]]:
    """Items and drop reasons per feedback kind (the kind the items came from)."""
    by_kind: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        by_kind[r.kind].append(r)
    made: dict[str, Items] = {}
    dropped: dict[str, Counter[str]] = defaultdict(Counter)
    made["pairwise"], dropped["pairwise"] = pairwise_items(by_kind["pairwise"], texts,
                                                           cfg.aggregate, cfg.ties)
    made["ranking"] = ranking_items(by_kind["ranking"], texts)
    made["rating"] = rating_items(by_kind["rating"], texts)
    made["binary"], dropped["binary"] = binary_items(by_kind["binary"], texts)
    made["implicit"], dropped["implicit"] = implicit_items(by_kind["implicit"], texts,
                                                           cfg.implicit)
    return made, dropped


def _item_hash(d: dict[str, Any], pid: int) -> str:
    """``content_hash(d)``; one sentence naming the prompt and field when the item holds text
    that is not valid Unicode (stored by a version that did not refuse it: issue 16)."""
    try:
        return content_hash(d)
    except UnicodeEncodeError:
        try:
            check_json(d, field="item")
        except PreflineError as exc:
            raise PreflineError(
                f"feedback on prompt {pid} holds text the store should have refused "
                f"({exc.field}: {exc.message}); delete or correct that feedback and retry",
                field="feedback") from None
        raise


def build_items(conn: Connection, cfg: SnapshotConfig) -> tuple[list[dict[str, Any]], SnapshotStats]:
    """The snapshot's items (``{"split", "kind", "data", "prompt_id", "hash"}``, in canonical
    order) and stats. ``hash`` covers kind and data; ``prompt_id`` links into this store."""
    matched = _kind_counts(conn, cfg.filters)
    matching = _feedback_rows(conn, cfg.filters, cfg.kinds)
    rows, excluded = screen(conn, matching, cfg.purpose, cfg.require_consent)
    made, dropped = _kind_items(rows, _texts(conn, rows), cfg)
    kept = {r.id for r in rows}
    for r in matching:  # each kind's line then adds up: records in = items + left out
        if r.id not in kept:
            dropped[r.kind][f"records without {cfg.purpose} consent"] += 1
    for kind in FEEDBACK_KINDS:
        if kind not in cfg.kinds and matched[kind]:
            dropped[kind][UNSELECTED] = matched[kind]
    raw = []
    for made_items in made.values():
        for d in made_items:
            pid = d.pop("_pid")
            raw.append((d["kind"], d["prompt_key"], _item_hash(d, pid), d, pid))
    raw.sort(key=lambda t: t[:3])
    items = [{"split": split_of(key, cfg.test_fraction, cfg.seed), "kind": d.pop("kind"),
              "data": d, "prompt_id": pid, "hash": h} for _, key, h, d, pid in raw]
    counts = Counter(f"{i['kind']}/{i['split']}" for i in items)
    tied = dropped["pairwise"]["tied pairs (ties=drop)"]
    stats = SnapshotStats(
        feedback=len(rows), items=len(items), prompts=len({i["data"]["prompt_key"] for i in items}),
        counts=dict(counts), feedback_by_kind=matched,
        items_by_kind={k: len(made.get(k, [])) for k in FEEDBACK_KINDS},
        dropped={k: dict(sorted(v.items())) for k, v in sorted(dropped.items()) if v},
        ties_dropped=tied, purpose=cfg.purpose, excluded=excluded,
        segments=segment_counts(i["data"] for i in items))
    return items, stats


def _recipe(cfg: SnapshotConfig) -> dict[str, Any]:
    """How the snapshot was built (stored with it; not part of its hash)."""
    recipe = {"filters": config.to_dict(cfg.filters), "kinds": list(cfg.kinds),
              "aggregate": cfg.aggregate, "ties": cfg.ties,
              "test_fraction": cfg.test_fraction, "seed": cfg.seed, "purpose": cfg.purpose,
              "require_consent": cfg.require_consent}
    if "implicit" in cfg.kinds:
        recipe["implicit"] = config.to_dict(cfg.implicit)
    return recipe


def _nothing(stats: SnapshotStats, cfg: SnapshotConfig) -> PreflineError:
    left_out = stats.excluded.get("records") or {}
    if not stats.feedback and left_out:
        return PreflineError(
            f"consent leaves no feedback for a {cfg.purpose} snapshot (left out: "
            f"{', '.join(f'{n} records: {why}' for why, n in left_out.items())}); record "
            f"consent with `prefline users consent USER {cfg.purpose}`", field="purpose")
    if not stats.feedback:
        other = {k: n for k, n in stats.feedback_by_kind.items() if n}
        hint = (f"; records of other kinds match: {', '.join(f'{k} {n}' for k, n in other.items())}"
                f" (add them with --kind)" if other else "")
        return PreflineError(f"no feedback matches the snapshot filters and kinds "
                             f"({', '.join(cfg.kinds)}){hint}", field="kinds" if other else None)
    return PreflineError(f"the {stats.feedback} matching feedback records yield no items "
                         f"(left out: {stats.dropped})")


def _store(conn: Connection, cfg: SnapshotConfig, items: list[dict[str, Any]],
           stats: SnapshotStats, recipe: dict[str, Any]) -> tuple[int, str, bool, str | None]:
    """(id, content hash, reused, stored name): an existing snapshot with the same content
    hash is reused instead of stored twice."""
    # The items' own hashes (kind + data) with their splits, in order: hashing each item
    # once serves both the canonical sort and the snapshot's hash.
    digest = content_hash([[it["split"], it["hash"]] for it in items])
    found = conn.execute(select(Snapshot.id, Snapshot.name).where(Snapshot.content_hash == digest)
                         .order_by(Snapshot.id).limit(1)).first()
    if found is not None:
        sid, name, reused = int(found.id), cfg.name or found.name, True
    else:
        sid, name, reused = conn.execute(Snapshot.__table__.insert().values(  # type: ignore[attr-defined]
            name=cfg.name, content_hash=digest, recipe=recipe, stats=jsonable(stats),
            created_at=utcnow(),
        ).returning(Snapshot.id)).scalar_one(), cfg.name, False
        insert_ignore(conn, "snapshot_items", _ITEM_COLS, [
            (sid, i, it["split"], it["kind"], it["prompt_id"], dumps(it["data"]))
            for i, it in enumerate(items)], "snapshot_id, position")
    moved = _claim_name(conn, cfg.name, sid, cfg.replace) if cfg.name else None
    conn.execute(AuditLog.__table__.insert().values(  # type: ignore[attr-defined]
        actor=cfg.actor, action="snapshot.create", target=f"snapshot:{sid}", created_at=utcnow(),
        details={"content_hash": digest, "recipe": recipe, "reused": reused, "name": cfg.name,
                 "name_moved_from": moved}))
    return sid, digest, reused, name


def _claim_name(conn: Connection, name: str, sid: int, replace: bool) -> int | None:
    """Give ``name`` to snapshot ``sid``; returns the snapshot it was moved from, if any.

    Raises PreflineError (the caller's transaction then stores nothing) when another
    snapshot has the name and ``replace`` is False.
    """
    held = conn.execute(select(SnapshotName.snapshot_id, Snapshot.content_hash)
                        .join(Snapshot, Snapshot.id == SnapshotName.snapshot_id)
                        .where(SnapshotName.name == name)).first()
    if held is None:
        conn.execute(insert(SnapshotName).values(name=name, snapshot_id=sid, created_at=utcnow()))
        return None
    if held.snapshot_id == sid:
        return None
    if not replace:
        raise PreflineError(
            f"the name {name!r} is already taken by snapshot {held.snapshot_id} (content "
            f"{held.content_hash[:12]}); choose another name, or pass --replace to move it "
            f"to this snapshot", field="name")
    conn.execute(update(SnapshotName).where(SnapshotName.name == name).values(
        snapshot_id=sid, created_at=utcnow()))
    return int(held.snapshot_id)


def run(cfg: SnapshotConfig, ctx: Context) -> SnapshotResult:
    """Build, hash and store a snapshot (same content → same hash, no copy stored).

    Raises PreflineError when no feedback matches or nothing usable remains.
    """
    recipe = _recipe(cfg)
    with ctx.store.engine.begin() as conn:
        items, stats = build_items(conn, cfg)
        if not items:
            raise _nothing(stats, cfg)
        sid, digest, reused, name = _store(conn, cfg, items, stats, recipe)
    return SnapshotResult(id=sid, name=name, content_hash=digest, reused=reused, recipe=recipe,
                          stats=stats)


def create_snapshot(db: str | None = None, name: str | None = None, *,
                    filters: Filters | None = None, aggregate: str = "majority",
                    ties: str = "drop", test_fraction: float = 0.1, seed: int = 0,
                    kinds: tuple[str, ...] = DEFAULT_KINDS, actor: str = "cli") -> Snapshot:
    """Python shorthand for :func:`run` on store ``db``; returns the stored snapshot row."""
    values = {"name": name, "kinds": kinds, "aggregate": aggregate, "ties": ties,
              "test_fraction": test_fraction, "seed": seed, "actor": actor}
    cfg = config.build(SnapshotConfig, values, base=SnapshotConfig(filters=filters or Filters()))
    return get_snapshot(run(cfg, Context(store=Store.open(db))).id, db)


def get_snapshot(ref: str | int | None = None, db: str | None = None) -> Snapshot:
    """A snapshot by id, name or content-hash prefix (≥ 6 hex digits); None → the latest."""
    with session_scope(db) as session:
        q = select(Snapshot).order_by(Snapshot.id.desc())
        ref = None if ref is None else str(ref)
        if ref is None:
            pass
        elif ref.isdigit():  # ids beyond 64 bits cannot exist (and would overflow the driver)
            q = q.where(Snapshot.id == int(ref) if int(ref) < 2**63 else false())
        else:
            named = select(SnapshotName.snapshot_id).where(SnapshotName.name == ref)
            # A name wins over a hash prefix that happens to spell it.
            if len(ref) >= 6 and session.scalar(named) is None:
                q = q.where(Snapshot.content_hash.startswith(ref.lower()))
            else:
                q = q.where(Snapshot.id.in_(named))
        snap = session.scalars(q.limit(1)).first()
    if snap is None:
        what = "the store has no snapshots (run `prefline snapshot create`)" if ref is None \
            else f"no snapshot matches {ref!r} (an id, a name or a content-hash prefix)"
        raise PreflineError(what, field="snapshot")
    return snap


def snapshot_names(db: str | None = None) -> dict[int, list[str]]:
    """``{snapshot id: its names}``, each list in the order the names were given."""
    with session_scope(db) as session:
        rows = session.execute(select(SnapshotName.snapshot_id, SnapshotName.name)
                               .order_by(SnapshotName.id)).tuples().all()
    out: dict[int, list[str]] = defaultdict(list)
    for sid, name in rows:
        out[int(sid)].append(name)
    return dict(out)


def list_snapshots(db: str | None = None) -> list[Snapshot]:
    """Every snapshot, oldest first."""
    with session_scope(db) as session:
        return list(session.scalars(select(Snapshot).order_by(Snapshot.id)))


def snapshot_items(snapshot_id: int, split: str = "all", db: str | None = None) -> list[dict[str, Any]]:
    """``[{"split", "kind", "data"}, ...]`` in snapshot order; ``split`` is train/test/all."""
    if split not in SPLITS:
        raise PreflineError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}", field="split")
    q = (select(SnapshotItem.split, SnapshotItem.kind, SnapshotItem.data)
         .where(SnapshotItem.snapshot_id == snapshot_id).order_by(SnapshotItem.position))
    if split != "all":
        q = q.where(SnapshotItem.split == split)
    with open_store(db).connect() as conn:
        return [{"split": s, "kind": k, "data": d} for s, k, d in conn.execute(q)]


def item_example(kind: str, d: dict[str, Any]) -> Example:
    """One stored item as the typed example trainers consume."""
    common = {"prompt": d["prompt"], "tags": tuple(d.get("tags", ())), "prompt_key": d["prompt_key"],
              "user": d.get("user"), "segment": dict(d.get("segment") or {})}
    if kind == "pairwise":
        return PreferencePair(chosen=d["chosen"], rejected=d["rejected"], tie=d["tie"],
                              strength=d.get("strength"), meta={"votes": d.get("votes")}, **common)
    if kind == "binary":
        meta: dict[str, Any] = {k: d[k] for k in ("source", "weight") if k in d}  # implicit-derived labels
        return UnpairedExample(completion=d["completion"], label=d["label"], meta=meta, **common)
    if kind == "ranking":
        return RankingExample(responses=tuple(d["responses"]), **common)
    return RatingExample(response=d["response"], scores=d["scores"], **common)


def snapshot_examples(snapshot_id: int | str, split: str = "train",
                      db: str | None = None) -> list[Example]:
    """The snapshot's examples for ``split`` (train/test/all), in snapshot order.

    ``snapshot_id`` may be an id, name or hash prefix as for :func:`get_snapshot`.
    """
    snap = get_snapshot(snapshot_id, db)
    return [item_example(it["kind"], it["data"]) for it in snapshot_items(snap.id, split, db)]
