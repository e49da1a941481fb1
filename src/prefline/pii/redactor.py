"""Apply a source's policy to a text: find entities, then redact, hash, refuse or keep.

Finding is a :class:`Detector` (``prefline.pii.presidio.detector`` builds one from
Presidio's pattern recognisers); this module only resolves overlaps and rewrites text, so it
stays cheap to import and easy to test with any detector.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefline.base.errors import PreflineError
from prefline.base.privacy import by_source
from prefline.formats.records import BadRecord
from prefline.pii.config import RedactionConfig, check_policy


@dataclass(frozen=True)
class Found:
    """One entity in a text: its type (``EMAIL_ADDRESS``), character span ``[start, end)``
    and the recogniser's confidence in [0, 1]."""

    entity: str
    start: int
    end: int
    score: float = 1.0


Detector = Callable[[str], list[Found]]
"""Text -> every entity any recogniser found (overlaps allowed)."""


class PiiFound(BadRecord):
    """A text under the ``reject`` policy holds personal data. The message names the field
    and the entity type, never the value; a BadRecord, so importers reject the record like
    any other bad one."""

    def __init__(self, entity: str, source: str, *, path: str | None = None,
                 line: int | None = None, field: str | None = None) -> None:
        message = (f"holds personal data ({entity}), and source {source!r} refuses records "
                   "with personal data (policy reject)")
        super().__init__(message, path=path, line=line, field=field)
        self.entity = entity


def resolve(found: list[Found]) -> list[Found]:
    """Non-overlapping entities, in text order: the most confident wins an overlap, then the
    longer (an e-mail address beats the URL-looking domain inside it)."""
    kept: list[Found] = []
    for f in sorted(found, key=lambda f: (-f.score, f.start - f.end, f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


_SEPARATORS = re.compile(r"[\s\-.()/]")


def normalise(entity: str, value: str) -> str:
    """What two spellings of one value share: case-folded, and for numbers (phones, cards,
    IBANs) without spaces, dashes, dots and brackets, so ``+44 20 7946 0958`` and
    ``+44-20-7946-0958`` hash alike."""
    value = value.casefold()
    if entity in ("EMAIL_ADDRESS", "URL", "IP_ADDRESS", "SECRET"):
        return value
    return _SEPARATORS.sub("", value)


@dataclass
class RedactionStats:
    """Counts only, never content: texts scanned, texts changed, records refused and entities
    found by type."""

    texts: int = 0
    changed: int = 0
    rejected: int = 0
    entities: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"texts": self.texts, "changed": self.changed, "rejected": self.rejected,
                "entities": dict(sorted(self.entities.items()))}


class Redactor:
    """The policy of every source and the detector that finds entities.

    ``salt`` keys the hash policy (HMAC-SHA256); without one, a source with policy ``hash``
    is refused when asked for.
    """

    def __init__(self, cfg: RedactionConfig, detect: Detector, salt: bytes | None = None) -> None:
        self.cfg, self.detect, self.salt = cfg, detect, salt
        self.stats = RedactionStats()

    def fresh(self) -> Redactor:
        """The same policies and detector with its own counts (one per request)."""
        return Redactor(self.cfg, self.detect, self.salt)

    def policy(self, source: str) -> str:
        """``source``'s policy; ``hash`` without a salt is an error, before anything is read."""
        policy = self.cfg.policy(source)
        if policy == "hash" and not self.salt:
            named = by_source(self.cfg.pii_policies, source) is not None
            raise PreflineError(f"source {source!r} uses policy hash, which needs a secret salt "
                                f"in ${self.cfg.pii_salt_env} (unset or empty)",
                                field="pii_policies" if named else "pii_default")
        return policy

    def find(self, text: str) -> list[Found]:
        """The entities of ``text``, overlaps resolved, in text order."""
        return resolve(self.detect(text))

    def placeholder(self, entity: str, value: str, policy: str) -> str:
        if policy == "redact":
            return f"<{entity}>"
        assert self.salt is not None  # policy() refused hash without one
        digest = hmac.new(self.salt, f"{entity}\x1f{normalise(entity, value)}".encode(),
                          hashlib.sha256).hexdigest()
        return f"<{entity}:{digest[:12]}>"

    def clean(self, text: str, policy: str, source: str, *, field: str,
              path: str | None = None, line: int | None = None) -> str:
        """``text`` under ``policy``: rewritten (redact, hash), unchanged (keep, or nothing
        found), or :class:`PiiFound` naming ``field`` (reject)."""
        check_policy(policy, "policy")
        if policy == "keep" or not text:
            return text
        found = self.find(text)
        self.stats.texts += 1
        if not found:
            return text
        self.stats.entities.update(f.entity for f in found)
        if policy == "reject":
            self.stats.rejected += 1
            raise PiiFound(found[0].entity, source, path=path, line=line, field=field)
        self.stats.changed += 1
        parts, at = [], 0
        for f in found:
            parts += [text[at:f.start], self.placeholder(f.entity, text[f.start:f.end], policy)]
            at = f.end
        return "".join(parts) + text[at:]



def redactor_for(cfg: RedactionConfig) -> Redactor | None:
    """None when every source keeps its text as given (nothing is scanned), else Presidio's
    redactor for ``cfg``."""
    if not cfg.active:
        return None
    # Imported only now: Presidio pulls in spaCy and torch (seconds), which a command whose
    # sources all keep their text must not pay for at start-up.
    from prefline.pii.presidio import build_redactor

    return build_redactor(cfg)
