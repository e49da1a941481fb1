"""The manifest of a personal policy folder, and routing a segment to its adapter.

A personal policy (``prefline train personal-dpo``) is one folder::

    manifest.json              this file's content (below)
    global/adapter/            the adapter trained on all data (the fallback)
    segments/<slug>/adapter/   one adapter per segment with at least min_pairs pairs

``manifest.json`` holds ``format``, ``segment_key``, ``min_pairs``, ``base_model``,
``global`` (``adapter``, ``pairs``), ``segments`` (value → ``adapter`` folder relative to
the manifest, ``pairs``; or, below ``min_pairs``, ``adapter: null`` and ``fallback``: why)
and ``suppressed`` (segments too small to name, k-anonymity). Torch-free: the server reads
it to route requests (:func:`route`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError

FORMAT = "prefline.personal_policy/1"
MANIFEST = "manifest.json"
GLOBAL = "global"
"""The name the fallback adapter is served (and reported) under."""


def is_personal(path: str | Path) -> bool:
    """Whether ``path`` is a personal policy folder (it holds a manifest of this format)."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        return False
    try:
        return bool(json.loads(file.read_text()).get("format") == FORMAT)
    except (ValueError, AttributeError):
        return False


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the personal policy folder ``path``, checked."""
    file = Path(path) / MANIFEST
    try:
        manifest = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise PreflineError(f"cannot read a personal policy manifest ({exc})",
                            path=str(file)) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PreflineError(f"expected format {FORMAT!r}", path=str(file), field="format")
    for value, entry in manifest.get("segments", {}).items():
        if entry.get("adapter") and not (Path(path) / entry["adapter"]).is_dir():
            raise PreflineError(f"segment {value!r}: adapter folder {entry['adapter']} is "
                                "missing", path=str(file), field="segments")
    return manifest


def adapter_name(key: str, value: str) -> str:
    """What a segment's adapter is served and reported as: ``key=value`` (``style=concise``),
    which no segment value can confuse with ``global``."""
    return f"{key}={value}"


def adapters(manifest: dict[str, Any]) -> dict[str, str]:
    """Adapter name → folder (relative to the manifest): ``global`` and each trained segment."""
    out = {GLOBAL: str(manifest["global"]["adapter"])}
    key = str(manifest["segment_key"])
    out.update({adapter_name(key, v): str(e["adapter"])
                for v, e in manifest.get("segments", {}).items() if e.get("adapter")})
    return out


def segment_value(segment: str | None, key: str) -> str | None:
    """The value of attribute ``key`` in a request's segment: a bare value (``concise``) or
    ``key=value`` pairs separated by commas (``style=concise,region=eu``)."""
    if not segment or not segment.strip():
        return None
    parts = [p.strip() for p in segment.split(",") if p.strip()]
    if not any("=" in p for p in parts):
        return segment.strip()
    for part in parts:
        name, _, value = part.partition("=")
        if name.strip() == key:
            return value.strip() or None
    return None


def route(manifest: dict[str, Any], segment: str | None,
          attrs: dict[str, str] | None = None) -> str:
    """The name of the adapter (:func:`adapters`) that serves a request: the declared
    attributes ``attrs`` (``{"style": "concise"}``) name the segment, else the ``segment``
    string (:func:`segment_value`); its own adapter, or ``global`` when the segment is
    absent, unknown, or fell back at training time (below min_pairs)."""
    key = str(manifest["segment_key"])
    value = (attrs or {}).get(key) or segment_value(segment, key)
    entry = manifest.get("segments", {}).get(value) if value is not None else None
    return adapter_name(key, value) if value is not None and entry and entry.get(
        "adapter") else GLOBAL
