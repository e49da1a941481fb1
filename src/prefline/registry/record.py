"""Writing the registry: :func:`record` is the one way an artifact gets registered."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prefline.base.errors import PreflineError
from prefline.base.stage import Ref, StageResult, jsonable
from prefline.registry.lineage import StoreLike, session
from prefline.registry.version import code_version
from prefline.store.db import audit
from prefline.store.models import Artifact, ArtifactInput, Snapshot


def record(store_or_url: StoreLike, kind: str, path: str | Path, *,
           config: dict[str, Any] | None, metrics: dict[str, Any] | None,
           inputs: Sequence[Ref], name: str | None = None, snapshot_hash: str | None = None,
           actor: str = "prefline") -> int:
    """Register an artifact with its typed inputs and return its id.

    The artifact row, one ``artifact_inputs`` row per input (in the given order) and an
    audit-log entry are written in one transaction; an input naming an artifact or snapshot
    that does not exist is a :class:`PreflineError` and nothing is written. The code
    version (commit plus dirty state) is taken from prefline's own checkout.
    """
    refs = _checked_refs(inputs)
    if not kind:
        raise PreflineError("an artifact needs a kind (policy, reward_model, ...)", field="kind")
    if snapshot_hash is not None and len(snapshot_hash) > 64:
        raise PreflineError(f"expected a content hash of at most 64 characters, got "
                            f"{len(snapshot_hash)}", field="snapshot_hash")
    version = code_version()  # before the transaction opens: git may take a moment
    with session(store_or_url) as s:
        _check_exist(s, refs)
        art = Artifact(kind=kind, name=name, path=str(Path(path).resolve()),
                       config=jsonable(config), snapshot_hash=snapshot_hash,
                       code_version=version, metrics=jsonable(metrics), status="registered")
        s.add(art)
        s.flush()
        s.add_all(ArtifactInput(artifact_id=art.id, role=r.role, input_artifact_id=r.artifact_id,
                                snapshot_id=r.snapshot_id, ref=r.ref, position=i)
                  for i, r in enumerate(refs))
        audit(s, actor, "artifact.register", f"artifact:{art.id}", kind=kind, path=art.path,
              code_version=version, inputs=[jsonable(r) for r in refs])
        return int(art.id)


def record_result(store_or_url: StoreLike, result: StageResult, config: Any,
                  name: str | None = None, actor: str = "prefline") -> int:
    """:func:`record` for a stage result: its ``artifact_kind``, ``path``, ``metrics``,
    ``lineage()`` and ``snapshot_hash`` (when it has one). ``config`` is the stage's config
    dataclass (or a dict); it is stored as plain JSON."""
    kind = type(result).artifact_kind
    what = type(result).__name__
    if not kind:
        raise PreflineError(f"{what} is not an artifact (it sets no artifact_kind)",
                            field="artifact_kind")
    path = getattr(result, "path", None)
    if path is None:
        raise PreflineError(f"{what} has no path to register", field="path")
    metrics = jsonable(getattr(result, "metrics", None))
    if metrics is not None and not isinstance(metrics, dict):
        raise PreflineError(f"{what}.metrics must be a mapping, got {type(metrics).__name__}",
                            field="metrics")
    return record(store_or_url, kind, path, config=jsonable(config), metrics=metrics,
                  inputs=result.lineage(), name=name,
                  snapshot_hash=getattr(result, "snapshot_hash", None), actor=actor)


def _checked_refs(inputs: Sequence[Ref]) -> list[Ref]:
    refs = list(inputs)
    for i, r in enumerate(refs):
        if not isinstance(r, Ref):
            raise PreflineError(f"input {i} is a {type(r).__name__}, expected a "
                                "prefline.base.stage.Ref", field="inputs")
    return refs


def _check_exist(s: Session, refs: list[Ref]) -> None:
    """Every referenced artifact and snapshot exists (one query per table)."""
    art_ids = {r.artifact_id for r in refs if r.artifact_id is not None}
    snap_ids = {r.snapshot_id for r in refs if r.snapshot_id is not None}
    found_arts = set(s.scalars(select(Artifact.id).where(Artifact.id.in_(art_ids)))) \
        if art_ids else set()
    found_snaps = set(s.scalars(select(Snapshot.id).where(Snapshot.id.in_(snap_ids)))) \
        if snap_ids else set()
    for i, r in enumerate(refs):
        if r.artifact_id is not None and r.artifact_id not in found_arts:
            raise PreflineError(f"input {i} ({r.role}) names artifact {r.artifact_id}, "
                                "which is not in the registry", field="inputs")
        if r.snapshot_id is not None and r.snapshot_id not in found_snaps:
            raise PreflineError(f"input {i} ({r.role}) names snapshot {r.snapshot_id}, "
                                "which is not in the store", field="inputs")
