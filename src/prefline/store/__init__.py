"""The store: every stage reads and writes through it."""

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
