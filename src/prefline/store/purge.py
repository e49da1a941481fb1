"""Deleting feedback and everything only it kept alive: shared by ``users forget`` and
``store prune``.

:func:`purge` removes the given feedback rows (and served-response log rows), then

- assignments that produced that feedback (deleted, the campaign item open again; or,
  for retention, kept done without their label);
- snapshot items copied from it: an item is matched by its prompt and the exact set of
  response texts the feedback judged (a pair, a ranking, one rated response), or by the
  ``user`` recorded in it. A consensus item that also holds another user's vote goes too:
  a copy of the deleted vote must not survive in any snapshot;
- responses nothing else refers to, and prompts nothing else refers to. A prompt or
  response that other users' feedback, a campaign, a served response or a remaining
  snapshot item still uses is kept: its text is then also theirs (prompts are shared by
  content hash), and deleting it would delete their data;
- and marks every snapshot that lost items, and every artifact built from one (followed
  through artifact inputs, transitively), as ``contains_forgotten_data``.

Everything runs in the caller's transaction, so a failure leaves the store as it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine

from prefline.store.collect_models import Assignment, CampaignItem
from prefline.store.models import (
    Artifact,
    ArtifactInput,
    Feedback,
    Prompt,
    Response,
    Snapshot,
    SnapshotItem,
)
from prefline.store.rollout_models import ServedResponse

CHUNK = 2000
"""Ids per ``IN (...)`` list: well under SQLite's and psycopg's parameter limits."""

_RESPONSE_COLS = (Feedback.response_a_id, Feedback.response_b_id, Feedback.response_id,
                  Feedback.shown_left_id)


@dataclass
class Purged:
    """What a purge removed (rows per table) and flagged (snapshot and artifact ids)."""

    counts: Counter[str] = field(default_factory=Counter)
    snapshots: set[int] = field(default_factory=set)
    artifacts: set[int] = field(default_factory=set)


def zero_deleted(conn: Connection) -> None:
    """SQLite keeps a deleted row's bytes in free pages until they are reused: on this
    connection, make it overwrite them with zeros (``secure_delete``). PostgreSQL keeps
    dead tuples until VACUUM (docs/privacy.md)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA secure_delete = ON")


def fold_wal(engine: Engine) -> None:
    """After the deleting transaction committed: SQLite's write-ahead log still holds the
    old pages; copy the new ones into the database file and truncate the log (best effort:
    a reader in another process can keep part of it until its next checkpoint)."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    ordered = sorted(set(ids))
    for i in range(0, len(ordered), CHUNK):
        yield ordered[i:i + CHUNK]


def _rows(conn: Connection, query: Any, column: Any, ids: Iterable[int]) -> list[Any]:
    """``query`` restricted to ``column IN ids``, chunk by chunk."""
    out: list[Any] = []
    for part in chunks(ids):
        out.extend(conn.execute(query.where(column.in_(part))).all())
    return out


def _delete(conn: Connection, model: Any, ids: Iterable[int]) -> int:
    n = 0
    for part in chunks(ids):
        n += conn.execute(delete(model).where(model.id.in_(part))).rowcount or 0
    return n


def _judged(row: Any) -> set[int]:
    """The responses a feedback row judged: a pair, a ranking's order, or one response."""
    if row.kind == "pairwise":
        ids = {row.response_a_id, row.response_b_id}
    elif row.kind == "ranking":
        ids = {i for i in (row.payload or {}).get("order", []) if isinstance(i, int)}
    else:
        ids = {row.response_id}
    return {int(i) for i in ids if i is not None}


def _response_ids(row: Any) -> set[int]:
    """Every response a feedback row refers to (judged, or shown on the left)."""
    return _judged(row) | ({int(row.shown_left_id)} if row.shown_left_id is not None else set())


def _feedback_query() -> Any:
    return select(Feedback.id, Feedback.kind, Feedback.prompt_id, Feedback.payload,
                  Feedback.user_id, *_RESPONSE_COLS)


Signatures = dict[tuple[int, frozenset[str]], set[str | None]]


def _signatures(conn: Connection, rows: list[Any]) -> Signatures:
    """``{(prompt id, texts judged): users}`` of the feedback rows: a snapshot item copied
    from one holds that prompt and those texts (and that user, or none if it pools users)."""
    judged = {r.id: _judged(r) for r in rows}
    texts = dict(_rows(conn, select(Response.id, Response.text), Response.id,
                       set().union(*judged.values())))
    out: Signatures = {}
    for r in rows:
        key = (int(r.prompt_id), frozenset(texts[i] for i in judged[r.id] if i in texts))
        out.setdefault(key, set()).add(r.user_id)
    return out


def item_texts(kind: str, data: dict[str, Any]) -> frozenset[str]:
    """The response texts a snapshot item holds."""
    if kind == "pairwise":
        return frozenset(t for t in (data.get("chosen"), data.get("rejected")) if t is not None)
    if kind == "ranking":
        return frozenset(data.get("responses") or ())
    key = "completion" if kind == "binary" else "response"
    return frozenset([data[key]]) if key in data else frozenset()


def _copied(item: Any, signatures: Signatures, users: Collection[str]) -> bool:
    """Does the snapshot item hold a copy of deleted feedback? An item naming another user
    is theirs alone, so it stays."""
    data = item.data or {}
    if data.get("user") is not None and data["user"] in users:
        return True
    found = signatures.get((int(item.prompt_id), item_texts(item.kind, data)))
    return found is not None and (data.get("user") is None or data["user"] in found)


def _drop_items(conn: Connection, prompts: set[int], signatures: Signatures,
                users: Collection[str], out: Purged) -> None:
    rows = _rows(conn, select(SnapshotItem.id, SnapshotItem.snapshot_id, SnapshotItem.kind,
                              SnapshotItem.prompt_id, SnapshotItem.data),
                 SnapshotItem.prompt_id, prompts)
    gone = [r for r in rows if _copied(r, signatures, users)]
    out.counts["snapshot_items"] += _delete(conn, SnapshotItem, [r.id for r in gone])
    out.snapshots.update(int(r.snapshot_id) for r in gone)


def _drop_assignments(conn: Connection, feedback_ids: Collection[int], reopen: bool,
                      out: Purged) -> None:
    """Assignments that produced the feedback: deleted with their items open again
    (``reopen``: someone else may label it), or kept done with no label (retention: the
    work was done, its label expired)."""
    rows = _rows(conn, select(Assignment.id, Assignment.item_id, Assignment.status),
                 Assignment.feedback_id, feedback_ids)
    if not reopen:
        for part in chunks(r.id for r in rows):
            conn.execute(update(Assignment).where(Assignment.id.in_(part))
                         .values(feedback_id=None))
        return
    for item_id, n in Counter(r.item_id for r in rows if r.status == "done").items():
        conn.execute(update(CampaignItem).where(CampaignItem.id == item_id)
                     .values(done_count=CampaignItem.done_count - n))
    out.counts["assignments"] += _delete(conn, Assignment, [r.id for r in rows])


def _drop_campaign_items(conn: Connection, items: Collection[int], out: Purged) -> None:
    for part in chunks(items):
        out.counts["assignments"] += conn.execute(
            delete(Assignment).where(Assignment.item_id.in_(part))).rowcount or 0
    out.counts["campaign_items"] += _delete(conn, CampaignItem, items)


def _referenced(conn: Connection, prompts: set[int],
                responses: dict[int, int]) -> tuple[set[int], set[int]]:
    """(responses, prompts) among the candidates that something left in the store uses."""
    used_r: set[int] = set()
    used_p: set[int] = set()
    for r in _rows(conn, _feedback_query(), Feedback.prompt_id, prompts):
        used_p.add(int(r.prompt_id))
        used_r |= _response_ids(r)
    for pid, rids in _rows(conn, select(CampaignItem.prompt_id, CampaignItem.response_ids),
                           CampaignItem.prompt_id, prompts):
        used_p.add(int(pid))
        used_r.update(int(i) for i in rids or [])
    used_r.update(int(rid) for (rid,) in _rows(conn, select(ServedResponse.response_id),
                                               ServedResponse.response_id, responses))
    used_p.update(int(p) for (p,) in _rows(conn, select(SnapshotItem.prompt_id),
                                           SnapshotItem.prompt_id, prompts))
    used_p.update(responses[r] for r in used_r if r in responses)
    return used_r, used_p


def _drop_unreferenced(conn: Connection, prompts: set[int], judged: set[int],
                       out: Purged) -> None:
    """Delete candidate responses and prompts nothing refers to any more (``prompts``
    includes the prompts of the ``judged`` responses).

    A response goes if it was one the deleted rows used, or if its prompt goes (answers to
    a deleted prompt repeat it); a prompt goes only with all of its responses.
    """
    responses = dict(_rows(conn, select(Response.id, Response.prompt_id), Response.prompt_id,
                           prompts))
    used_r, used_p = _referenced(conn, prompts, responses)
    dead_p = prompts - used_p
    dead_r = {r for r, p in responses.items() if r not in used_r and (r in judged or p in dead_p)}
    out.counts["responses"] += _delete(conn, Response, dead_r)
    out.counts["prompts"] += _delete(conn, Prompt, dead_p)


def flag_lineage(conn: Connection, snapshot_ids: set[int]) -> set[int]:
    """Mark the snapshots and every artifact built from them (inputs followed transitively,
    and artifacts that name a snapshot's content hash) ``contains_forgotten_data``; returns
    the artifact ids."""
    if not snapshot_ids:
        return set()
    for part in chunks(snapshot_ids):
        conn.execute(update(Snapshot).where(Snapshot.id.in_(part))
                     .values(contains_forgotten_data=True))
    hashes = {h for (h,) in _rows(conn, select(Snapshot.content_hash), Snapshot.id, snapshot_ids)}
    found = {int(a) for (a,) in _rows(conn, select(ArtifactInput.artifact_id),
                                      ArtifactInput.snapshot_id, snapshot_ids)}
    found |= {int(a) for (a,) in conn.execute(select(Artifact.id).where(
        Artifact.snapshot_hash.in_(list(hashes))))}
    frontier = set(found)
    while frontier:
        frontier = {int(a) for (a,) in _rows(conn, select(ArtifactInput.artifact_id),
                                             ArtifactInput.input_artifact_id, frontier)} - found
        found |= frontier
    for part in chunks(found):
        conn.execute(update(Artifact).where(Artifact.id.in_(part))
                     .values(contains_forgotten_data=True))
    return found


def purge(conn: Connection, feedback_ids: Collection[int], served_ids: Collection[int] = (),
          users: Collection[str] = (), campaign_items: Collection[int] = (),
          reopen: bool = True) -> Purged:
    """Delete the feedback and served-response rows and what only they kept (module doc).

    ``users``: user ids whose snapshot items go whatever they hold; ``campaign_items``:
    items (with their assignments) to delete too (``users forget``: items made from the
    user's prompts); ``reopen``: see :func:`_drop_assignments`.
    """
    out = Purged()
    rows = _rows(conn, _feedback_query(), Feedback.id, feedback_ids)
    served = _rows(conn, select(ServedResponse.id, ServedResponse.response_id),
                   ServedResponse.id, served_ids)
    judged = set().union(*(_response_ids(r) for r in rows), {int(s.response_id) for s in served
                                                             if s.response_id is not None})
    prompts = {int(r.prompt_id) for r in rows}
    signatures = _signatures(conn, rows)
    _drop_assignments(conn, feedback_ids, reopen, out)
    for part in chunks(feedback_ids):  # links first: chunked deletes must not break them
        conn.execute(update(Feedback).where(Feedback.supersedes_id.in_(part))
                     .values(supersedes_id=None))
    out.counts["feedback"] += _delete(conn, Feedback, feedback_ids)
    out.counts["served_responses"] += _delete(conn, ServedResponse, served_ids)
    _drop_campaign_items(conn, campaign_items, out)
    prompts |= {int(p) for (p,) in _rows(conn, select(Response.prompt_id), Response.id, judged)}
    _drop_items(conn, prompts, signatures, users, out)
    _drop_unreferenced(conn, prompts, judged, out)
    out.artifacts = flag_lineage(conn, out.snapshots)
    return out
