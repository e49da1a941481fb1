"""Collection: the annotation web app, the production-feedback ingest API and their auth.

``create_app(db_url)`` builds the FastAPI app; ``prefline serve`` runs it with uvicorn.
"""

from __future__ import annotations

import prefline.store.collect_models  # noqa: F401  (the collection tables join Base.metadata)
from prefline.collect.app import create_app

__all__ = ["create_app"]
