"""Segments in snapshots (issue 14, item 1): the ``--segment KEY=VALUE`` filter and the
item counts per segment value that a snapshot's stats keep.

Stats keep every count; reports that print them (the CLI) show only groups of at least
``min_group_size`` items (:func:`prefline.base.privacy.k_anonymous`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from prefline.base.errors import PreflineError


def parse_segment_filter(values: Iterable[str], field: str = "segment") -> dict[str, str]:
    """``("style=concise", ...)`` → ``{"style": "concise"}``; PreflineError on a value
    without ``=``, an empty key, or one key asked for twice with different values."""
    wanted: dict[str, str] = {}
    for text in values:
        key, sep, value = str(text).partition("=")
        key = key.strip()
        if not sep or not key:
            raise PreflineError(f"expected KEY=VALUE (e.g. style=concise), got {text!r}",
                                field=field)
        if wanted.get(key, value) != value:
            raise PreflineError(f"segment key {key!r} is asked for twice with different values "
                                f"({wanted[key]!r} and {value!r})", field=field)
        wanted[key] = value
    return wanted


def segment_matches(segment: Mapping[str, Any] | None, wanted: Mapping[str, str]) -> bool:
    """Whether ``segment`` has every attribute of ``wanted``."""
    have = segment or {}
    return all(have.get(k) == v for k, v in wanted.items())


def segment_counts(items: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Items per value of each segment key, ``{key: {value: n}}`` (items without the key
    are not counted under it)."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for data in items:
        for key, value in (data.get("segment") or {}).items():
            out[key][value] += 1
    return {k: dict(sorted(c.items())) for k, c in sorted(out.items())}
