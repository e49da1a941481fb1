"""What ``prefline snapshot create`` reads: which feedback goes in and how it becomes items.

:class:`SnapshotConfig` is the stage's config (see :mod:`prefline.base.config`): nested
frozen dataclasses whose attribute docstrings are the ``--help`` text. ``filters`` selects
feedback records; ``kinds`` selects feedback kinds; ``implicit`` is the rule that turns
implicit signals into binary (KTO) labels, applied only when ``kinds`` includes
``implicit`` (it does not by default). docs/feedback-kinds.md explains each kind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Literal

from prefline.base.errors import PreflineError
from prefline.base.privacy import DEFAULT_MIN_GROUP_SIZE, check_k
from prefline.base.text import check_text, printable
from prefline.store.consensus import AGGREGATES, TIES
from prefline.store.consent import SNAPSHOT_PURPOSES, check_purpose
from prefline.store.models import ANNOTATOR_KINDS, FEEDBACK_KINDS
from prefline.store.segments import parse_segment_filter

DEFAULT_KINDS = tuple(k for k in FEEDBACK_KINDS if k != "implicit")
"""Every kind but implicit: implicit signals are a weak, noisy label, so they are opt-in."""

Label = Literal["undesirable", "desirable", "ignore"]
LABELS = ("undesirable", "desirable", "ignore")


def parse_time(value: str | None, field: str) -> dt.datetime | None:
    """An ISO date or time as naive UTC (the store's convention); None stays None."""
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise PreflineError(f"expected an ISO date or time like 2026-01-31T12:00, got {value!r}",
                            field=field) from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when


@dataclasses.dataclass(frozen=True)
class Filters:
    """Which feedback records go in; None means no restriction."""

    source: str | None = None
    """Only feedback from this source (an imported file's name, or api:<key name>)."""
    tag: str | None = None
    """Only feedback on prompts that carry this tag."""
    annotator_kind: Literal["human", "ai_judge", "implicit"] | None = None
    """Only feedback from this kind of annotator: human, ai_judge or implicit."""
    since: str | None = None
    """Only feedback given at or after this time (ISO date or time; UTC unless it says)."""
    until: str | None = None
    """Only feedback given before this time (ISO date or time; UTC unless it says)."""
    segment: tuple[str, ...] = ()
    """Only feedback whose segment has each of these KEY=VALUE attributes (e.g.
    style=concise); feedback without the key is left out."""

    def __post_init__(self) -> None:
        if isinstance(self.segment, str):  # one "k=v" would otherwise iterate letters
            object.__setattr__(self, "segment", (self.segment,))
        wanted = parse_segment_filter(self.segment)
        object.__setattr__(self, "segment", tuple(f"{k}={v}" for k, v in sorted(wanted.items())))
        if self.annotator_kind is not None and self.annotator_kind not in ANNOTATOR_KINDS:
            raise PreflineError(f"unknown annotator kind {self.annotator_kind!r}; expected one "
                                f"of {', '.join(ANNOTATOR_KINDS)}", field="annotator_kind")
        since, until = parse_time(self.since, "since"), parse_time(self.until, "until")
        if since is not None and until is not None and since >= until:
            raise PreflineError(f"since ({self.since}) must be before until ({self.until})",
                                field="until")

    def segment_filter(self) -> dict[str, str]:
        """``segment`` as ``{key: value}``."""
        return parse_segment_filter(self.segment)

    def window(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """(since, until) as naive UTC datetimes."""
        return parse_time(self.since, "since"), parse_time(self.until, "until")


@dataclasses.dataclass(frozen=True)
class ImplicitRule:
    """How implicit signals become binary (KTO) labels on the response they concern.

    Each signal maps to a label (desirable, undesirable, or ignore) and a weight that says
    how much that label counts next to an explicit thumbs up/down (weight 1). A response
    with several events of one signal yields one item; different signals on one response
    yield one item each (their weights then pull against each other in training).
    """

    regenerate: Label = "undesirable"
    """Implicit signal regenerate: label of the response the user replaced by asking for
    another one."""
    regenerate_weight: float = 1.0
    """Implicit signal regenerate: weight of its label (an explicit thumbs counts 1)."""
    edit: Label = "undesirable"
    """Implicit signal edit: label of a response the user edited before using it."""
    edit_weight: float = 1.0
    """Implicit signal edit: weight of its label."""
    copy: Label = "desirable"
    """Implicit signal copy: label of a response the user copied (weak evidence: people
    also copy text to fix it)."""
    copy_weight: float = 0.5
    """Implicit signal copy: weight of its label."""
    dwell: Label = "desirable"
    """Implicit signal dwell_ms: label of a response the user read for at least
    dwell_min_ms."""
    dwell_weight: float = 0.5
    """Implicit signal dwell_ms: weight of its label."""
    dwell_min_ms: float = 30000.0
    """Implicit signal dwell_ms: reading time (ms) from which it counts; shorter dwells
    are left out."""
    click: Label = "ignore"
    """Implicit signal click: label of a response the user clicked (ignored by default:
    a click says little about quality)."""
    click_weight: float = 0.5
    """Implicit signal click: weight of its label."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_weight") and not (math.isfinite(value) and value > 0):
                raise PreflineError(f"expected a weight > 0, got {value}", field=f.name)
            if isinstance(value, str) and value not in LABELS:
                raise PreflineError(f"unknown label {value!r}; expected one of "
                                    f"{', '.join(LABELS)}", field=f.name)
        if not (math.isfinite(self.dwell_min_ms) and self.dwell_min_ms >= 0):
            raise PreflineError(f"expected a dwell time >= 0 ms, got {self.dwell_min_ms}",
                                field="dwell_min_ms")

    def rule(self, signal: str) -> tuple[Label, float] | None:
        """(label, weight) for an implicit signal; None for a signal the rule does not know."""
        name = "dwell" if signal == "dwell_ms" else signal
        if name not in ("regenerate", "edit", "copy", "dwell", "click"):
            return None
        return getattr(self, name), getattr(self, f"{name}_weight")


def snapshot_name(name: str) -> str:
    """``name`` checked and NFC-normalised: a name must be storable text, not blank, at most
    200 characters, and not all digits (that reads as an id)."""
    name = check_text(name, field="name", nfc=True).strip()
    if not name or len(name) > 200 or name.isdigit():
        raise PreflineError(f"expected a snapshot name of 1 to 200 characters that is not a "
                            f"number (numbers are ids), got {printable(name)!r}", field="name")
    return name


@dataclasses.dataclass(frozen=True)
class SnapshotConfig:
    """Settings of ``prefline snapshot create``."""

    name: str | None = None
    """A name to find the snapshot by (its id and content-hash prefix work too). Names are
    unique; naming a snapshot whose content is already stored adds the name to it (an alias)."""
    replace: bool = False
    """Move the name to this snapshot when another snapshot has it (otherwise that is an error)."""
    kinds: tuple[str, ...] = DEFAULT_KINDS
    """Feedback kinds to include: pairwise, ranking, rating, binary, implicit (implicit
    signals become binary items by the implicit rule)."""
    aggregate: Literal["majority", "bt"] = "majority"
    """Consensus over several judgments of one pair: majority or bt (Bradley-Terry)."""
    ties: Literal["drop", "keep", "half"] = "drop"
    """Pairs whose consensus is a tie: drop them, keep them as ties, or (half) count tie
    votes as half a win for each side."""
    test_fraction: float = 0.1
    """Share of prompts in the test split (a prompt's hash decides; grouped by prompt)."""
    seed: int = 0
    """Seed of the prompt-grouped train/test split."""
    filters: Filters = dataclasses.field(default_factory=Filters)
    implicit: ImplicitRule = dataclasses.field(default_factory=ImplicitRule)
    purpose: Literal["training", "evaluation"] = "training"
    """What the snapshot is for: only feedback of users whose latest consent covers it goes
    in (training consent covers evaluation too); the exclusions are counted in its stats."""
    require_consent: bool = False
    """Also leave out feedback without a user id (by default it goes in: it is tied to no
    person, so there is nobody whose consent it needs)."""
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE
    """Smallest segment group the printed report shows (k-anonymity); the stored stats keep
    every count."""
    actor: str = "cli"
    """Who asked for the snapshot, as written in the audit log."""

    def __post_init__(self) -> None:
        check_purpose(self.purpose, SNAPSHOT_PURPOSES)
        check_k(self.min_group_size)
        if self.name is not None:
            object.__setattr__(self, "name", snapshot_name(self.name))
        if self.aggregate not in AGGREGATES:
            raise PreflineError(f"unknown aggregate {self.aggregate!r}; expected one of "
                                f"{', '.join(AGGREGATES)}", field="aggregate")
        if self.ties not in TIES:
            raise PreflineError(f"unknown ties policy {self.ties!r}; expected one of "
                                f"{', '.join(TIES)}", field="ties")
        if not 0.0 <= self.test_fraction < 1.0:
            raise PreflineError(f"test fraction must be in [0, 1), got {self.test_fraction}",
                                field="test_fraction")
        if isinstance(self.kinds, str):  # a bare "pairwise" would otherwise iterate letters
            object.__setattr__(self, "kinds", (self.kinds,))
        unknown = [k for k in self.kinds if k not in FEEDBACK_KINDS]
        if unknown or not self.kinds:
            got = f"got {unknown[0]!r}" if unknown else "got none"
            raise PreflineError(f"expected feedback kinds among {', '.join(FEEDBACK_KINDS)}, "
                                f"{got}", field="kinds")
        # Canonical order, no repeats: the recipe then does not depend on how kinds were typed.
        object.__setattr__(self, "kinds", tuple(k for k in FEEDBACK_KINDS if k in self.kinds))
