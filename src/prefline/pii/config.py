"""The redaction settings shared by ``prefline import`` and ``prefline serve``.

Kept free of Presidio (whose import pulls in spaCy and torch, seconds of start-up), so a
command that only keeps text as it is never pays for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prefline.base.errors import PreflineError
from prefline.base.privacy import by_source

POLICIES = ("redact", "hash", "reject", "keep")
"""What happens to a text holding personal data: replace each entity by ``<TYPE>``, by a
salted stable hash ``<TYPE:1a2b3c4d5e6f>``, refuse the record, or store it unchanged."""

_ENTITY_NAME = re.compile(r"[A-Z][A-Z0-9_]{1,39}")


def check_policy(policy: str, field: str) -> str:
    """``policy`` if it is one of ``POLICIES``; else a PreflineError naming ``field``."""
    if policy not in POLICIES:
        raise PreflineError(f"unknown redaction policy {policy!r}; expected one of "
                            f"{', '.join(POLICIES)}", field=field)
    return policy


@dataclass(frozen=True)
class RedactionConfig:
    """Personal-data redaction at ingest, per source (see docs/privacy.md, "PII redaction")."""

    pii_default: str = "keep"
    """Policy for sources that pii_policies does not name: redact | hash | reject | keep."""
    pii_policies: dict[str, str] = field(default_factory=dict)
    """Source name (or glob, e.g. "api:*") -> policy, as a JSON object; the exact name, else
    the longest matching glob, decides. Imports are named by --source (default: the file
    name), ingest-API events by api:<key name>."""
    pii_patterns: dict[str, str] = field(default_factory=dict)
    """Extra entity types: NAME -> regular expression, as a JSON object, e.g.
    {"ACCOUNT_ID": "ACC-[0-9]{8}"}; NAME is upper case (it becomes the placeholder <NAME>)."""
    pii_secrets: bool = True
    """Also find API-key- and secret-looking tokens (entity SECRET): known key prefixes
    (sk-, ghp_, AKIA, xox?-, pk_, ...), JSON web tokens and long mixed-case random tokens."""
    pii_phone_regions: tuple[str, ...] = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "CA",
                                          "AU", "BR")
    """Countries whose national phone formats are recognised (numbers written with +country
    code are found for any country)."""
    pii_salt_env: str = "PREFLINE_PII_SALT"
    """Environment variable holding the secret salt of the hash policy (required when a source
    uses it: an unsalted hash of an e-mail address is reversed by guessing)."""

    def __post_init__(self) -> None:
        check_policy(self.pii_default, "pii_default")
        for source, policy in self.pii_policies.items():
            check_policy(policy, f"pii_policies.{source}")
        for name, pattern in self.pii_patterns.items():
            if not _ENTITY_NAME.fullmatch(name):
                raise PreflineError(f"entity name {name!r} must be UPPER_CASE letters, digits "
                                    "and _ (2-40 characters)", field=f"pii_patterns.{name}")
            try:
                if re.compile(pattern).match(""):
                    raise PreflineError("the pattern matches the empty string",
                                        field=f"pii_patterns.{name}")
            except re.error as exc:
                raise PreflineError(f"not a regular expression: {exc}",
                                    field=f"pii_patterns.{name}") from None
        if not self.pii_phone_regions:
            raise PreflineError("name at least one region", field="pii_phone_regions")

    def policy(self, source: str) -> str:
        """The policy for ``source``: its exact entry, else its longest matching glob, else the
        default (the rule of retention periods too)."""
        return by_source(self.pii_policies, source) or self.pii_default

    @property
    def active(self) -> bool:
        """Whether any source can be treated other than ``keep`` (else nothing is scanned)."""
        return self.pii_default != "keep" or any(p != "keep" for p in self.pii_policies.values())
