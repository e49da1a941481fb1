"""The registry lifecycle: candidate → staging → canary → production → retired | rolled_back.

A status changes only through :func:`promote` and :func:`rollback` (the CLI's
``prefline registry promote|rollback`` and the admin API call them); each change is one
transaction that also appends an ``audit_log`` row with the actor and the reason, so the
history of every artifact can be replayed from the log. Artifacts recorded before this
lifecycle existed carry status ``registered``, which counts as ``candidate``.

Leaving ``candidate`` needs a passing gate check (:mod:`prefline.rollout.gates`) recorded
against the artifact's current content hash: weights edited after the check must be checked
again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prefline.base.errors import PreflineError
from prefline.base.hashing import file_sha256
from prefline.store.db import audit
from prefline.store.models import Artifact, AuditLog

STATUSES = ("candidate", "staging", "canary", "production", "retired", "rolled_back")
NEXT = {"candidate": "staging", "staging": "canary", "canary": "production"}
"""The one forward step from each status (``promote`` without ``--to``)."""
ROLLBACK_FROM = ("staging", "canary", "production")
GATE_ACTION = "gate.check"


def status_of(art: Artifact) -> str:
    """The lifecycle status; ``registered`` (recorded before the lifecycle) is a candidate."""
    return "candidate" if art.status in ("registered", None) else art.status


def artifact_hash(path: str | Path) -> str:
    """sha256 over an artifact's files: relative path and content hash of each, sorted.

    A single file hashes as its content; a missing path is refused (nothing to promote).
    """
    root = Path(path)
    if root.is_file():
        return file_sha256(root)
    if not root.is_dir():
        raise PreflineError(f"artifact path {root} does not exist, so it cannot be hashed",
                            path=str(root))
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(root).as_posix()}\0{file_sha256(f)}\n".encode())
    return digest.hexdigest()


def require(s: Session, artifact_id: int) -> Artifact:
    art = s.get(Artifact, artifact_id)
    if art is None:
        raise PreflineError(f"no artifact with id {artifact_id} in the registry",
                            field="artifact_id")
    return art


def passing_check(s: Session, artifact_id: int, digest: str) -> AuditLog | None:
    """The latest gate check of this artifact at this exact hash, if it passed."""
    rows = s.scalars(select(AuditLog).where(
        AuditLog.action == GATE_ACTION, AuditLog.target == f"artifact:{artifact_id}")
        .order_by(AuditLog.id.desc())).all()
    for row in rows:
        details = row.details or {}
        if details.get("artifact_hash") == digest:
            return row if details.get("passed") else None
    return None


def set_status(s: Session, art: Artifact, new: str, actor: str, reason: str,
               **details: Any) -> None:
    """Change the status and log it; callers have already checked the transition."""
    old = status_of(art)
    art.status = new
    audit(s, actor, f"lifecycle.{new}", f"artifact:{art.id}", old=old, new=new,
          reason=reason, **details)


def check_promotion(s: Session, art: Artifact, to: str | None) -> str:
    """The target status of a promotion, or a PreflineError saying in one sentence why not."""
    old = status_of(art)
    target = to or NEXT.get(old)
    if target is None or target not in STATUSES:
        raise PreflineError(f"artifact {art.id} is {old}; there is nothing to promote it to "
                            f"(promotion goes {' → '.join(list(NEXT) + ['production'])})",
                            field="to")
    if NEXT.get(old) != target and not (old == "staging" and target == "production"):
        raise PreflineError(f"artifact {art.id} is {old} and cannot go to {target}; the next "
                            f"step is {NEXT.get(old, 'none')}", field="to")
    if art.kind != "policy" and target in ("canary", "production"):
        raise PreflineError(f"artifact {art.id} is a {art.kind}; only policies are served",
                            field="artifact_id")
    if old == "candidate":
        digest = artifact_hash(art.path)
        if passing_check(s, art.id, digest) is None:
            raise PreflineError(f"artifact {art.id} has no passing gate check for its current "
                                f"content (hash {digest[:12]}); run `prefline gate check` first",
                                field="artifact_id")
    return target


def check_rollback(art: Artifact) -> None:
    old = status_of(art)
    if old not in ROLLBACK_FROM:
        raise PreflineError(f"artifact {art.id} is {old}; only a staging, canary or production "
                            "artifact can be rolled back", field="artifact_id")


__all__ = ["NEXT", "STATUSES", "artifact_hash", "check_promotion", "check_rollback",
           "passing_check", "require", "set_status", "status_of"]
