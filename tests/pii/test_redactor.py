"""The redactor on single texts: each policy, hashing, overlaps, configuration errors, and
Presidio built and run with the network cut off."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tests.pii.conftest import redactor

from prefline.base.errors import PreflineError
from prefline.pii.config import RedactionConfig
from prefline.pii.redactor import Detector, Found, PiiFound, normalise, resolve

TEXT = "Write to ana.diaz@example.com or call +44 20 7946 0958; account ACC-12345678."


def test_redact_replaces_each_entity_by_its_type(detector: Detector) -> None:
    r = redactor(detector)
    out = r.clean(TEXT, "redact", "src", field="prompt")
    assert out == "Write to <EMAIL_ADDRESS> or call <PHONE_NUMBER>; account <ACCOUNT_ID>."
    assert r.stats.to_json() == {"texts": 1, "changed": 1, "rejected": 0, "entities": {
        "ACCOUNT_ID": 1, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}}


def test_hash_is_stable_linkable_and_salted(detector: Detector) -> None:
    r = redactor(detector)
    a = r.clean("mail ANA.DIAZ@example.com, phone +44 20 7946 0958", "hash", "s", field="f")
    b = r.clean("mail ana.diaz@example.com, phone +44-20-7946-0958", "hash", "s", field="f")
    assert a == b  # one person, two spellings: still linkable
    assert a.startswith("mail <EMAIL_ADDRESS:") and "example" not in a and "7946" not in a
    other = r.clean("mail bo.lee@example.com, phone +44 20 7946 0958", "hash", "s", field="f")
    assert other.split(",")[0] != a.split(",")[0] and other.split(",")[1] == a.split(",")[1]
    salted = redactor(detector, salt=b"another").clean(
        "mail ana.diaz@example.com, phone +44 20 7946 0958", "hash", "s", field="f")
    assert salted != a


def test_reject_names_field_and_type_never_the_value(detector: Detector) -> None:
    r = redactor(detector)
    with pytest.raises(PiiFound) as err:
        r.clean(TEXT, "reject", "api:prod", field="responses[1].text", path="in.jsonl", line=7)
    message = str(err.value)
    assert message.startswith("in.jsonl, line 7, field 'responses[1].text': holds personal data")
    assert "EMAIL_ADDRESS" in message and "api:prod" in message
    assert "ana.diaz" not in message and "7946" not in message and "ACC-" not in message
    assert r.stats.rejected == 1


def test_keep_and_clean_texts_are_unchanged(detector: Detector) -> None:
    r = redactor(detector)
    assert r.clean(TEXT, "keep", "s", field="f") == TEXT
    assert r.clean("Version 2.3.10 shipped on 2024-05-01.", "redact", "s", field="f") == \
        "Version 2.3.10 shipped on 2024-05-01."
    assert r.stats.texts == 1 and r.stats.changed == 0  # keep scans nothing


def test_secrets_are_found_unless_switched_off(detector: Detector) -> None:
    text = "my key is sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t and AKIAIOSFODNN7EXAMPLE"
    assert redactor(detector).clean(text, "redact", "s", field="f") == \
        "my key is <SECRET> and <SECRET>"
    from prefline.pii.presidio import detector as build

    plain = build(RedactionConfig(pii_secrets=False))
    assert not [f for f in plain(text) if f.entity == "SECRET"]


def test_policy_per_source_exact_then_longest_glob_then_default() -> None:
    cfg = RedactionConfig(pii_default="redact", pii_policies={
        "api:trusted": "keep", "api:*": "reject", "api:team-*": "redact",
        "vendor-*.jsonl": "hash"})
    assert cfg.policy("api:trusted") == "keep"
    assert cfg.policy("api:prod") == "reject"
    assert cfg.policy("api:team-7") == "redact"  # the longest matching glob wins
    assert cfg.policy("vendor-7.jsonl") == "hash"
    assert cfg.policy("notes.jsonl") == "redact"
    assert cfg.active and not RedactionConfig().active


@pytest.mark.parametrize(("settings", "field", "says"), [
    ({"pii_default": "scrub"}, "pii_default", "unknown redaction policy 'scrub'; expected one of "
                                              "redact, hash, reject, keep"),
    ({"pii_policies": {"api:*": "delete"}}, "pii_policies.api:*", "unknown redaction policy"),
    ({"pii_patterns": {"ACCOUNT_ID": "ACC-[0-9"}}, "pii_patterns.ACCOUNT_ID",
     "not a regular expression"),
    ({"pii_patterns": {"account": "ACC"}}, "pii_patterns.account", "UPPER_CASE"),
    ({"pii_patterns": {"ANY": "x*"}}, "pii_patterns.ANY", "matches the empty string"),
])
def test_bad_settings_fail_clearly(settings: dict[str, object], field: str, says: str) -> None:
    with pytest.raises(PreflineError) as err:
        RedactionConfig(**settings)  # type: ignore[arg-type]
    assert err.value.field == field and says in err.value.message


def test_unknown_phone_region_and_hash_without_salt(detector: Detector) -> None:
    from prefline.pii.presidio import recognizers

    with pytest.raises(PreflineError, match="unknown phone region.*XX") as err:
        recognizers(RedactionConfig(pii_phone_regions=("US", "XX")))
    assert err.value.field == "pii_phone_regions"
    r = redactor(detector, salt=None, pii_policies={"api:*": "hash"})
    with pytest.raises(PreflineError, match=r"needs a secret salt in \$PREFLINE_PII_SALT") as err:
        r.policy("api:prod")
    assert err.value.field == "pii_policies"


def test_overlaps_keep_the_most_confident_then_longest() -> None:
    found = [Found("URL", 4, 15, 0.5), Found("EMAIL_ADDRESS", 0, 20, 1.0),
             Found("PHONE_NUMBER", 25, 35, 0.4), Found("SECRET", 30, 50, 0.4)]
    assert resolve(found) == [Found("EMAIL_ADDRESS", 0, 20, 1.0), Found("SECRET", 30, 50, 0.4)]
    assert normalise("PHONE_NUMBER", "+44 (20) 7946-0958") == "+442079460958"


def test_nothing_is_downloaded_at_import_or_run_time() -> None:
    """Presidio imported, built and run in a fresh process whose sockets cannot connect."""
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network use attempted')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from prefline.pii.config import RedactionConfig\n"
        "from prefline.pii.presidio import build_redactor\n"
        "r = build_redactor(RedactionConfig(pii_default='redact'))\n"
        "print(r.clean('mail ana@example.com, call (415) 555-2671', 'redact', 's', field='f'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "mail <EMAIL_ADDRESS>, call <PHONE_NUMBER>"
    assert "network use attempted" not in out.stderr


def test_query_strings_and_2_series_cards(detector: Detector) -> None:
    """Two gaps of Presidio's stock recognisers that the labelled set found: its e-mail pattern
    swallows ``phone=...&email=`` (leaving half the number in the text), and its card patterns
    miss Mastercard's 2-series."""
    r = redactor(detector)
    assert r.clean("GET /c?phone=0044 20 7946 0958&email=ana@example.com HTTP/1.1", "redact", "s",
                   field="f") == "GET /c?phone=<PHONE_NUMBER>&email=<EMAIL_ADDRESS> HTTP/1.1"
    assert r.clean("card 2223 0031 2200 3222 declined", "redact", "s", field="f") == \
        "card <CREDIT_CARD> declined"
