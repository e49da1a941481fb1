"""Reading the registry: artifacts, their typed inputs, and the whole lineage graph."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prefline.base.errors import PreflineError
from prefline.base.stage import Ref
from prefline.store.context import Store
from prefline.store.db import session_scope
from prefline.store.models import Artifact, ArtifactInput, Snapshot

StoreLike = Store | str | None
"""A :class:`Store`, a store URL or SQLite path, or None for the default store."""


@contextmanager
def session(db: StoreLike) -> Iterator[Session]:
    with session_scope(db.url if isinstance(db, Store) else db) as s:
        yield s


def _require(s: Session, artifact_id: int) -> Artifact:
    art = s.get(Artifact, artifact_id)
    if art is None:
        raise PreflineError(f"no artifact with id {artifact_id}", field="artifact_id")
    return art


def get_artifact(artifact_id: int, db: StoreLike = None) -> Artifact | None:
    with session(db) as s:
        return s.get(Artifact, artifact_id)


def list_artifacts(kind: str | None = None, db: StoreLike = None) -> list[Artifact]:
    with session(db) as s:
        q = select(Artifact).order_by(Artifact.id)
        if kind:
            q = q.where(Artifact.kind == kind)
        return list(s.scalars(q))


def _input_rows(s: Session, artifact_ids: Sequence[int]) -> list[ArtifactInput]:
    q = select(ArtifactInput).where(ArtifactInput.artifact_id.in_(artifact_ids))
    return list(s.scalars(q.order_by(ArtifactInput.artifact_id, ArtifactInput.position)))


def _ref(row: ArtifactInput) -> Ref:
    return Ref(row.role, artifact_id=row.input_artifact_id, snapshot_id=row.snapshot_id,
               ref=row.ref)


def inputs_of(artifact_id: int, db: StoreLike = None) -> tuple[Ref, ...]:
    """The artifact's inputs in the order they were recorded."""
    with session(db) as s:
        _require(s, artifact_id)
        return tuple(_ref(r) for r in _input_rows(s, [artifact_id]))


def inputs_by_artifact(artifact_ids: Sequence[int],
                       db: StoreLike = None) -> dict[int, tuple[Ref, ...]]:
    """Inputs of many artifacts in one query (ids without inputs map to ``()``)."""
    out: dict[int, list[Ref]] = {i: [] for i in artifact_ids}
    with session(db) as s:
        for row in _input_rows(s, list(artifact_ids)):
            out[row.artifact_id].append(_ref(row))
    return {k: tuple(v) for k, v in out.items()}


def _node(art: Artifact) -> dict[str, Any]:
    return {"id": art.id, "kind": art.kind, "name": art.name, "path": art.path,
            "status": art.status, "code_version": art.code_version,
            "snapshot_hash": art.snapshot_hash,
            "created_at": art.created_at.isoformat() if art.created_at else None}


def _walk(s: Session, artifact_id: int,
          depth: int | None) -> tuple[dict[str, Any], list[Artifact]]:
    """Depth-first, in input order; each artifact expanded at its first visit only.

    A later visit (a shared ancestor, or a cycle written by hand into the tables) becomes
    ``{"id", "kind", "name", "repeated": True}`` so the walk always ends. Iterative, so a
    long chain of previous policies cannot hit Python's recursion limit.
    """
    root: dict[str, Any] = {}
    visited: list[Artifact] = []
    seen: set[int] = set()
    stack: list[tuple[dict[str, Any], int, int]] = [(root, artifact_id, 0)]
    while stack:
        slot, art_id, level = stack.pop()
        art = _require(s, art_id) if slot is root else s.get(Artifact, art_id)
        if art is None:
            slot.update(id=art_id, missing=True)
            continue
        if art.id in seen:
            slot.update(id=art.id, kind=art.kind, name=art.name, repeated=True)
            continue
        seen.add(art.id)
        visited.append(art)
        slot.update(_node(art), inputs=[])
        children: list[tuple[dict[str, Any], int, int]] = []
        for row in _input_rows(s, [art.id]):
            entry: dict[str, Any] = {"role": row.role}
            if row.input_artifact_id is not None:
                entry["artifact"] = child = {"id": row.input_artifact_id}
                if depth is None or level + 1 < depth:
                    children.append((child, row.input_artifact_id, level + 1))
                else:
                    child.update(_summary(s, row.input_artifact_id))
            if row.snapshot_id is not None:
                snap = s.get(Snapshot, row.snapshot_id)
                entry["snapshot"] = {"id": row.snapshot_id, "name": snap and snap.name,
                                     "content_hash": snap and snap.content_hash}
            if row.ref is not None:
                entry["ref"] = row.ref
            slot["inputs"].append(entry)
        stack.extend(reversed(children))  # pop the first input next: pre-order
    return root, visited


def _summary(s: Session, art_id: int) -> dict[str, Any]:
    art = s.get(Artifact, art_id)
    return {"missing": True} if art is None else _node(art)


def lineage_tree(artifact_id: int, db: StoreLike = None,
                 depth: int | None = None) -> dict[str, Any]:
    """The artifact and, nested under ``inputs``, everything it was built from.

    Each input is ``{"role", "artifact"|"snapshot"|"ref": ...}``; snapshots and refs are
    leaves. ``depth=1`` stops after the direct inputs. JSON-ready.
    """
    with session(db) as s:
        return _walk(s, artifact_id, depth)[0]


def ancestors(artifact_id: int, db: StoreLike = None) -> list[Artifact]:
    """The artifact, then every artifact it was built from, each once, depth-first."""
    with session(db) as s:
        return _walk(s, artifact_id, None)[1]


def describe_input(entry: dict[str, Any]) -> str:
    """One input of a :func:`lineage_tree` node as a short line (``role: what``)."""
    parts = []
    if "artifact" in entry:
        parts.append(_label(entry["artifact"]))
    if "snapshot" in entry:
        snap = entry["snapshot"]
        name = f" {snap['name']}" if snap.get("name") else ""
        parts.append(f"snapshot {snap['id']}{name} {(snap.get('content_hash') or '?')[:12]}")
    if "ref" in entry:
        parts.append(entry["ref"])
    return f"{entry['role']}: " + ", ".join(parts)


def _label(node: dict[str, Any]) -> str:
    if node.get("missing"):
        return f"#{node['id']} (missing)"
    text = f"#{node['id']} {node['kind']}" + (f" {node['name']}" if node.get("name") else "")
    if node.get("repeated"):
        return text + " (shown above)"
    if node.get("snapshot_hash"):
        text += f" data={node['snapshot_hash'][:12]}"
    return text + (f" code={node['code_version']}" if node.get("code_version") else "")


def render_tree(tree: dict[str, Any]) -> list[str]:
    """:func:`lineage_tree` as indented lines; a shared ancestor is expanded once."""
    lines = [_label(tree)]
    stack: list[tuple[dict[str, Any], str, bool]] = []

    def push(node: dict[str, Any], prefix: str) -> None:
        entries = node.get("inputs", [])
        stack.extend((entries[i], prefix, i == len(entries) - 1)
                     for i in reversed(range(len(entries))))

    push(tree, "")
    while stack:
        entry, prefix, last = stack.pop()
        lines.append(prefix + ("└─ " if last else "├─ ") + describe_input(entry))
        if "artifact" in entry:
            push(entry["artifact"], prefix + ("   " if last else "│  "))
    return lines
