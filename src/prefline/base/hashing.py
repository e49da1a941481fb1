"""Stable content hashes: the same content always gives the same hex digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal content serialises identically."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(obj: Any) -> str:
    """sha256 hex digest of ``canonical_json(obj)`` (strings are hashed as themselves)."""
    data = obj if isinstance(obj, str) else canonical_json(obj)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def file_sha256(path: str | Path, block: int = 1 << 22) -> str:
    """sha256 hex digest of a file's bytes, read in blocks (model weights are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()
