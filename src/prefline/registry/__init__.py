"""Artifacts and lineage: every trained model is registered with where it came from."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import select

from prefline import __version__
from prefline.store.db import audit, session_scope
from prefline.store.models import Artifact


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+<git commit>`` when run from a checkout, else the version."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{__version__}+{sha}" if sha else __version__
    except (OSError, subprocess.SubprocessError):
        return __version__


def register_artifact(
    kind: str, path: str | Path, *, db: str | None = None, name: str | None = None,
    config: dict[str, Any] | None = None, snapshot_hash: str | None = None,
    snapshot_id: int | None = None, parent_id: int | None = None,
    metrics: dict[str, Any] | None = None, actor: str = "prefline",
) -> int:
    """Record an artifact (and an audit-log entry) and return its id."""
    with session_scope(db) as s:
        art = Artifact(
            kind=kind, name=name, path=str(Path(path).resolve()), config=config,
            snapshot_id=snapshot_id, snapshot_hash=snapshot_hash, parent_id=parent_id,
            code_version=code_version(), metrics=metrics, status="registered",
        )
        s.add(art)
        s.flush()
        audit(s, actor, "artifact.register", f"artifact:{art.id}", kind=kind, path=art.path)
        return int(art.id)


def get_artifact(artifact_id: int, db: str | None = None) -> Artifact | None:
    with session_scope(db) as s:
        return s.get(Artifact, artifact_id)


def lineage(artifact_id: int, db: str | None = None) -> list[Artifact]:
    """The artifact and its ancestors, newest first."""
    chain: list[Artifact] = []
    with session_scope(db) as s:
        current = s.get(Artifact, artifact_id)
        while current is not None:
            chain.append(current)
            current = s.get(Artifact, current.parent_id) if current.parent_id else None
        return chain


def list_artifacts(kind: str | None = None, db: str | None = None) -> list[Artifact]:
    with session_scope(db) as s:
        q = select(Artifact).order_by(Artifact.id)
        if kind:
            q = q.where(Artifact.kind == kind)
        return list(s.scalars(q))
