"""Snapshots: frozen, content-hashed training sets built from the store's feedback.

``create_snapshot`` selects feedback (source, prompt tag, annotator kind, time range),
reaches a consensus per judged pair (majority or Bradley-Terry, explicit ties policy),
splits train/test by prompt (a prompt's hash decides its split, so no prompt is in both
and adding data never moves a prompt), and stores the items. The content hash covers the
items only (split, kind, content; never database ids or names), so it changes if and only
if the training content changes, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.base.splits import split_of
from prefline.formats.examples import (
    PreferencePair,
    RankingExample,
    RatingExample,
    UnpairedExample,
)
from prefline.formats.records import Example
from prefline.store.bulk import dumps, insert_ignore
from prefline.store.consensus import AGGREGATES, TIES, bradley_terry, bt_outcome, majority
from prefline.store.db import open_store, session_scope
from prefline.store.models import (
    Annotator,
    AuditLog,
    Feedback,
    Prompt,
    Response,
    Snapshot,
    SnapshotItem,
    utcnow,
)

SPLITS = ("train", "test", "all")
_ITEM_COLS = ("snapshot_id", "position", "split", "kind", "prompt_id", "data")


@dataclass(frozen=True)
class Filters:
    """Which feedback goes in; None means no restriction. Times are naive UTC."""

    source: str | None = None
    tag: str | None = None
    annotator_kind: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _feedback_rows(conn: Connection, f: Filters) -> list[Any]:
    q = (select(Feedback.id, Feedback.kind, Feedback.annotator_id, Feedback.prompt_id,
                Feedback.response_a_id, Feedback.response_b_id, Feedback.response_id,
                Feedback.choice, Feedback.payload, Prompt.content_hash, Prompt.messages,
                Prompt.text, Prompt.tags)
         .join(Prompt, Prompt.id == Feedback.prompt_id)
         .join(Annotator, Annotator.id == Feedback.annotator_id)
         .order_by(Feedback.id))
    if f.source:
        q = q.where(Feedback.source == f.source)
    if f.annotator_kind:
        q = q.where(Annotator.kind == f.annotator_kind)
    if f.since:
        q = q.where(Feedback.created_at >= f.since)
    if f.until:
        q = q.where(Feedback.created_at < f.until)
    rows = list(conn.execute(q))
    if f.tag:  # tags are a JSON list: filter here, portable across backends
        rows = [r for r in rows if f.tag in (r.tags or [])]
    return rows


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


def _prompt(r: Any) -> dict[str, Any]:
    msgs = r.messages or [{"role": "user", "content": r.text or ""}]
    # "_pid" is the store's prompt id: kept out of the hashed content (ids differ per store).
    return {"prompt": msgs, "prompt_key": r.content_hash, "tags": sorted(r.tags or []),
            "_pid": r.prompt_id}


def _pairwise_items(rows: list[Any], texts: dict[int, str], aggregate: str,
                    ties: str) -> tuple[list[dict[str, Any]], int]:
    """One item per judged pair; returns (items, pairs dropped as ties)."""
    latest: dict[tuple[int, frozenset[int]], dict[int, int | None]] = defaultdict(dict)
    info: dict[int, Any] = {}
    for r in rows:  # in id order, so a later judgment by the same annotator wins
        a, b = r.response_a_id, r.response_b_id
        vote = a if r.choice == "a" else b if r.choice == "b" else None
        latest[(r.prompt_id, frozenset((a, b)))][r.annotator_id] = vote
        info[r.prompt_id] = r
    scores: dict[int, dict[Any, float]] = {}
    if aggregate == "bt":
        comps: dict[int, list[tuple[Any, Any, float]]] = defaultdict(list)
        for (pid, pair), votes in latest.items():
            a, b = sorted(pair)
            comps[pid].extend((a, b, 0.5 if v is None else float(v == a)) for v in votes.values())
        scores = {pid: bradley_terry(c) for pid, c in comps.items()}
    items, dropped = [], 0
    for (pid, pair), votes in latest.items():
        a, b = sorted(pair, key=lambda i: texts[i])
        out = (bt_outcome(a, b, scores[pid], len(votes)) if aggregate == "bt"
               else majority(a, b, list(votes.values()), ties))
        if out.winner is None and ties == "drop":
            dropped += 1
            continue
        win, lose = (out.winner, out.loser) if out.winner is not None else (a, b)
        items.append({"kind": "pairwise", **_prompt(info[pid]), "chosen": texts[win],  # type: ignore[index]
                      "rejected": texts[lose], "tie": out.winner is None,  # type: ignore[index]
                      "strength": round(out.strength, 6), "votes": out.votes})
    return items, dropped


def _other_items(rows: list[Any], texts: dict[int, str]) -> list[dict[str, Any]]:
    """Binary (KTO) labels by majority, rankings as given, ratings averaged per criterion."""
    labels: dict[tuple[int, int], dict[int, bool]] = defaultdict(dict)
    ratings: dict[tuple[int, int], dict[int, dict[str, float]]] = defaultdict(dict)
    rankings: dict[tuple[int, tuple[int, ...]], dict[int, list[int]]] = defaultdict(dict)
    info = {r.prompt_id: r for r in rows}
    for r in rows:
        if r.kind == "binary":
            labels[(r.prompt_id, r.response_id)][r.annotator_id] = bool(r.payload["value"])
        elif r.kind == "rating":
            ratings[(r.prompt_id, r.response_id)][r.annotator_id] = r.payload["scores"]
        elif r.kind == "ranking":
            order = list(r.payload["order"])
            rankings[(r.prompt_id, tuple(sorted(order)))][r.annotator_id] = order
    items: list[dict[str, Any]] = []
    for (pid, rid), votes in labels.items():
        yes = sum(votes.values())
        if 2 * yes != len(votes):  # an even split carries no label
            items.append({"kind": "binary", **_prompt(info[pid]), "completion": texts[rid],
                          "label": 2 * yes > len(votes)})
    for (pid, rid), by in ratings.items():
        crit = sorted({c for s in by.values() for c in s})
        mean = {c: round(sum(s[c] for s in by.values() if c in s)
                         / sum(c in s for s in by.values()), 6) for c in crit}
        items.append({"kind": "rating", **_prompt(info[pid]), "response": texts[rid], "scores": mean})
    for (pid, _), orders in rankings.items():
        for ranked in {tuple(o) for o in orders.values()}:  # identical rankings once
            items.append({"kind": "ranking", **_prompt(info[pid]),
                          "responses": [texts[i] for i in ranked]})
    return items


def build_items(conn: Connection, filters: Filters, aggregate: str, ties: str,
                test_fraction: float, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The snapshot's items (``{"split", "kind", "data", "prompt_id", "hash"}``, in canonical
    order) and stats. ``hash`` covers kind and data; ``prompt_id`` links into this store."""
    rows = _feedback_rows(conn, filters)
    texts = _texts(conn, rows)
    pairs, dropped = _pairwise_items([r for r in rows if r.kind == "pairwise"], texts, aggregate, ties)
    raw = []
    for d in pairs + _other_items(rows, texts):
        pid = d.pop("_pid")
        raw.append((d["kind"], d["prompt_key"], content_hash(d), d, pid))
    raw.sort(key=lambda t: t[:3])
    items = [{"split": split_of(key, test_fraction, seed), "kind": d.pop("kind"), "data": d,
              "prompt_id": pid, "hash": h} for _, key, h, d, pid in raw]
    counts = Counter(f"{i['kind']}/{i['split']}" for i in items)
    stats = {"feedback": len(rows), "items": len(items), "ties_dropped": dropped,
             "prompts": len({i["data"]["prompt_key"] for i in items}), "counts": dict(counts)}
    return items, stats


def _check_args(aggregate: str, ties: str, test_fraction: float) -> None:
    if aggregate not in AGGREGATES:
        raise PreflineError(f"unknown aggregate {aggregate!r}; expected one of {', '.join(AGGREGATES)}",
                            field="aggregate")
    if ties not in TIES:
        raise PreflineError(f"unknown ties policy {ties!r}; expected one of {', '.join(TIES)}",
                            field="ties")
    if not 0.0 <= test_fraction < 1.0:
        raise PreflineError(f"test fraction must be in [0, 1), got {test_fraction}",
                            field="test_fraction")


def create_snapshot(db: str | None = None, name: str | None = None, *,
                    filters: Filters | None = None, aggregate: str = "majority",
                    ties: str = "drop", test_fraction: float = 0.1, seed: int = 0,
                    actor: str = "cli") -> Snapshot:
    """Build, hash and store a snapshot; an existing snapshot with the same content hash
    is returned instead of a copy. Raises PreflineError when no feedback matches."""
    _check_args(aggregate, ties, test_fraction)
    filters = filters or Filters()
    engine = open_store(db)
    with engine.begin() as conn:
        items, stats = build_items(conn, filters, aggregate, ties, test_fraction, seed)
        if not items:
            raise PreflineError("no feedback matches the snapshot filters")
        # The items' own hashes (kind + data) with their splits, in order: hashing each item
        # once serves both the canonical sort and the snapshot's hash.
        digest = content_hash([[it["split"], it["hash"]] for it in items])
        recipe = {"filters": {k: (str(v) if v is not None else None) for k, v in asdict(filters).items()},
                  "aggregate": aggregate, "ties": ties, "test_fraction": test_fraction, "seed": seed}
        found = conn.execute(select(Snapshot.id).where(Snapshot.content_hash == digest)
                             .order_by(Snapshot.id).limit(1)).scalar()
        reused = found is not None
        if found is None:
            found = conn.execute(Snapshot.__table__.insert().values(  # type: ignore[attr-defined]
                name=name, content_hash=digest, recipe=recipe, stats=stats, created_at=utcnow(),
            ).returning(Snapshot.id)).scalar_one()
            insert_ignore(conn, "snapshot_items", _ITEM_COLS, [
                (found, i, it["split"], it["kind"], it["prompt_id"], dumps(it["data"]))
                for i, it in enumerate(items)], "snapshot_id, position")
        conn.execute(AuditLog.__table__.insert().values(  # type: ignore[attr-defined]
            actor=actor, action="snapshot.create", target=f"snapshot:{found}", created_at=utcnow(),
            details={"content_hash": digest, "recipe": recipe, "reused": reused}))
    return get_snapshot(str(found), db)


def get_snapshot(ref: str | int | None = None, db: str | None = None) -> Snapshot:
    """A snapshot by id, name or content-hash prefix (≥ 6 hex digits); None → the latest."""
    with session_scope(db) as session:
        q = select(Snapshot).order_by(Snapshot.id.desc())
        ref = None if ref is None else str(ref)
        if ref is None:
            pass
        elif ref.isdigit():
            q = q.where(Snapshot.id == int(ref))
        elif len(ref) >= 6:
            q = q.where((Snapshot.name == ref) | Snapshot.content_hash.startswith(ref.lower()))
        else:
            q = q.where(Snapshot.name == ref)
        snap = session.scalars(q.limit(1)).first()
    if snap is None:
        what = "the store has no snapshots (run `prefline snapshot create`)" if ref is None \
            else f"no snapshot matches {ref!r} (an id, a name or a content-hash prefix)"
        raise PreflineError(what, field="snapshot")
    return snap


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
    common = {"prompt": d["prompt"], "tags": tuple(d.get("tags", ())), "prompt_key": d["prompt_key"]}
    if kind == "pairwise":
        return PreferencePair(chosen=d["chosen"], rejected=d["rejected"], tie=d["tie"],
                              strength=d.get("strength"), meta={"votes": d.get("votes")}, **common)
    if kind == "binary":
        return UnpairedExample(completion=d["completion"], label=d["label"], **common)
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
