"""The detector behind :class:`prefline.pii.redactor.Redactor`: Microsoft Presidio's pattern
recognisers, offline.

Presidio's ``AnalyzerEngine`` normally loads a spaCy NER model (``en_core_web_lg``) and
downloads it when missing; here it runs on a blank English spaCy pipeline (a tokenizer,
shipped inside spaCy) whose lemmas are the lower-cased tokens, so Presidio's context words
("phone", "ssn", "card") still raise a nearby match's score. Nothing is downloaded at import
or at run time: the e-mail recogniser's domain check uses tldextract's bundled public-suffix
snapshot instead of fetching the list. Without NER, names and postal addresses are not found
(docs/privacy.md, "PII redaction").

Importing this module imports Presidio, spaCy and (through them) torch: seconds. Callers
import it only when some source's policy is not ``keep``.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from typing import Any

import phonenumbers
import spacy
import tldextract
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.nlp_engine import SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)
from presidio_analyzer.recognizer_registry import RecognizerRegistry
from spacy.language import Language

from prefline.base.errors import PreflineError
from prefline.pii.config import RedactionConfig
from prefline.pii.redactor import Detector, Found, Redactor

MIN_SCORE = 0.3
"""Presidio scores below this are dropped: its bare nine-digit "SSN" patterns score 0.05 and
count only next to a context word (which adds 0.35)."""

# No network: the public-suffix list bundled with tldextract, never a fetch.
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

KNOWN_SECRETS = [
    ("openai/anthropic key", r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}"),
    ("github token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("aws access key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("slack token", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    ("google api key", r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("stripe key", r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("hugging face token", r"\bhf_[A-Za-z0-9]{30,}"),
    ("prefline api key", r"\bpk_[0-9a-f]{8}_[A-Za-z0-9_\-]{20,}"),
    ("json web token", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]
"""Secrets with a recognisable shape (prefix and alphabet of the issuer's tokens)."""


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail pattern; the domain checked against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return bool(_OFFLINE_TLD(pattern_text).fqdn)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None,
                regex_flags: int | None = None) -> list[Any]:
        """As Presidio's, but a local part is cut after its last ``=``, ``&`` or ``?``: RFC 5322
        allows them, and so the pattern swallows ``phone=...&email=`` of a query string
        (hiding half a phone number behind an e-mail placeholder and leaving the rest)."""
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        for r in results:
            local = text[r.start:r.end].split("@")[0]
            cut = max(local.rfind(c) for c in "=&?")
            if cut >= 0:
                r.start += cut + 1
        return [r for r in results if text[r.start] != "@"]


class CardRecognizer(CreditCardRecognizer):
    """Presidio's card patterns (Luhn-checked) plus Mastercard's 2-series (2221-2720, issued
    since 2017), which its patterns miss."""

    PATTERNS = [*CreditCardRecognizer.PATTERNS,
                Pattern("Mastercard 2-series", r"\b2(?:2[2-9]|[3-6]\d|7[0-2])\d(?:[- ]?\d{4}){3}\b",
                        0.3)]


class RandomTokenRecognizer(PatternRecognizer):
    """Long random-looking tokens (32+ characters of upper, lower case and digits with high
    character entropy): unlabelled API keys and passwords. Git hashes and UUIDs (lower-case
    hex) and long words do not qualify."""

    def __init__(self) -> None:
        super().__init__(supported_entity="SECRET", name="RandomTokenRecognizer",
                         patterns=[Pattern("random token", r"\b[A-Za-z0-9_\-+/]{32,}={0,2}", 0.5)],
                         context=["key", "token", "secret", "password", "api"])

    def validate_result(self, pattern_text: str) -> bool:
        core = pattern_text.rstrip("=")
        classes = [any(c.islower() for c in core), any(c.isupper() for c in core),
                   any(c.isdigit() for c in core)]
        counts = Counter(core)
        entropy = -sum(n / len(core) * math.log2(n / len(core)) for n in counts.values())
        return all(classes) and entropy >= 4.0


@Language.component("prefline_lower_lemma")
def _lower_lemma(doc: Any) -> Any:
    """Lemma = lower-cased token: enough for Presidio's context words without a model."""
    for token in doc:
        token.lemma_ = token.lower_
    return doc


class BlankSpacyEngine(SpacyNlpEngine):
    """Presidio's spaCy engine on ``spacy.blank("en")``: tokens and lemmas, no NER, no
    download (``SpacyNlpEngine.load`` would fetch ``en_core_web_lg``)."""

    def load(self) -> None:
        nlp = spacy.blank("en")
        nlp.add_pipe("prefline_lower_lemma")
        self.nlp = {"en": nlp}  # type: ignore[assignment]  # Presidio types it as None


def recognizers(cfg: RedactionConfig) -> list[EntityRecognizer]:
    """Presidio's pattern recognisers plus the secrets and ``cfg.pii_patterns`` ones."""
    unknown = [r for r in cfg.pii_phone_regions if r not in phonenumbers.SUPPORTED_REGIONS]
    if unknown:
        raise PreflineError(f"unknown phone region(s) {', '.join(unknown)}; expected ISO 3166 "
                            "codes such as US, GB, DE", field="pii_phone_regions")
    out: list[EntityRecognizer] = [
        OfflineEmailRecognizer(), PhoneRecognizer(supported_regions=cfg.pii_phone_regions),
        CardRecognizer(), IbanRecognizer(), IpRecognizer(), UsSsnRecognizer()]
    if cfg.pii_secrets:
        out.append(PatternRecognizer(
            supported_entity="SECRET", name="KnownSecretRecognizer",
            patterns=[Pattern(name, regex, 0.9) for name, regex in KNOWN_SECRETS]))
        out.append(RandomTokenRecognizer())
    # Configured patterns are the operator's explicit intent: they outrank generic matches.
    out += [PatternRecognizer(supported_entity=name, name=f"pattern:{name}",
                              patterns=[Pattern(name, regex, 0.95)])
            for name, regex in cfg.pii_patterns.items()]
    return out


def detector(cfg: RedactionConfig) -> Detector:
    """Text -> every entity Presidio's analyzer found with a score of at least ``MIN_SCORE``."""
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)  # per-text debug chatter
    engine = BlankSpacyEngine()
    engine.load()
    registry = RecognizerRegistry(recognizers=recognizers(cfg), supported_languages=["en"])
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"],
                              default_score_threshold=MIN_SCORE)

    def detect(text: str) -> list[Found]:
        return [Found(r.entity_type, r.start, r.end, r.score)
                for r in analyzer.analyze(text, language="en")]

    return detect


def build_redactor(cfg: RedactionConfig) -> Redactor:
    """The redactor for ``cfg``: Presidio's detector and the salt from ``cfg.pii_salt_env``."""
    salt = os.environ.get(cfg.pii_salt_env, "")
    return Redactor(cfg, detector(cfg), salt.encode("utf-8") or None)
