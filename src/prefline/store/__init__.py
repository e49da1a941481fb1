"""The store: every stage reads and writes through it."""

# Collection tables share Base.metadata; import them so the metadata is always complete.
from prefline.store import collect_models, consent_models, rollout_models  # noqa: F401
from prefline.store.db import audit, get_engine, open_store, session_scope, upgrade
from prefline.store.models import (
    Annotator,
    Artifact,
    AuditLog,
    Base,
    Feedback,
    Prompt,
    Response,
    Snapshot,
    SnapshotItem,
)

__all__ = [
    "Annotator", "Artifact", "AuditLog", "Base", "Feedback", "Prompt", "Response", "Snapshot",
    "SnapshotItem", "audit", "get_engine", "open_store", "session_scope", "upgrade",
]
