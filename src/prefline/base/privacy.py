"""k-anonymity for segment-level reports, and the pseudonym logs keep for a user id.

A report that prints a count (or a metric) per segment value can single out a person when a
group is tiny: "style=legal: 1 pair, 100% prefers the long answer" describes one user. Every
segment-level report therefore shows only the groups with at least ``k`` members and says how
many it suppressed, so a reader knows the table is incomplete without learning who is missing.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from typing import TypeVar

from prefline.base.errors import PreflineError

DEFAULT_MIN_GROUP_SIZE = 5
"""Default k: the smallest group a segment-level report may show (config ``min_group_size``)."""


V = TypeVar("V")


def by_source(settings: Mapping[str, V], source: str) -> V | None:
    """The setting for ``source`` in a per-source map (retention periods, redaction policies):
    its exact name, else the longest glob pattern that matches it (``api:*``), else None."""
    if source in settings:
        return settings[source]
    matches = [p for p in settings if fnmatch.fnmatchcase(source, p)]
    return settings[max(matches, key=len)] if matches else None


def pseudonym(user: str) -> str:
    """What a log stores for a user id (rollout's served responses): its sha256, never the id."""
    return hashlib.sha256(user.encode()).hexdigest()


def check_k(k: int, *, field: str = "min_group_size") -> int:
    """``k`` itself, after checking it is a positive integer (k=1 shows every non-empty group)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise PreflineError(f"expected a positive integer (the smallest group a report may show), "
                            f"got {k!r}", field=field)
    return k


def k_anonymous(counts: Mapping[str, int], k: int) -> set[str]:
    """The groups that may be shown: those whose count is at least ``k``.

    ``counts`` maps a group name (e.g. a segment value) to its number of records; groups with
    fewer than ``k`` records (including empty ones) are left out.
    """
    check_k(k, field="k")
    return {group for group, n in counts.items() if n >= k}


def suppressed_note(counts: Mapping[str, int], k: int) -> str | None:
    """``"N groups suppressed (n < k)"`` for the groups :func:`k_anonymous` hides, or None if none."""
    hidden = len(counts) - len(k_anonymous(counts, k))
    if hidden == 0:
        return None
    noun = "group" if hidden == 1 else "groups"
    return f"{hidden} {noun} suppressed (n < {k})"
