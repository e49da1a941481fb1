"""PII policies through the real ``prefline import`` (SQLite): redact, hash, reject (fail and
skip), keep, a per-source map, and a bad policy name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.cli_runner import run_cli
from tests.pii.conftest import store_text

from prefline.store.db import open_store
from prefline.store.models import Feedback

EMAIL, PHONE = "ana.diaz@example.com", "+44 20 7946 0958"
RECORDS = [
    {"prompt": f"Please email {EMAIL} the invoice.", "chosen": "Done, I sent it.",
     "rejected": "I cannot send e-mail."},
    {"prompt": "What is 12 * 7?", "chosen": "84", "rejected": "82"},
    {"prompt": [{"role": "user", "content": "Call me back"},
                {"role": "assistant", "content": "On which number?"},
                {"role": "user", "content": f"{PHONE}, or write to {EMAIL}"}],
     "chosen": f"I will call {PHONE}.", "rejected": "No."},
]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "support.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


def _import(path: Path, url: str, capsys: pytest.CaptureFixture[str],
            *args: str) -> tuple[int, dict | str, str]:
    code, out, err = run_cli(["import", str(path), "--db", url, "--json", *args], capsys)
    return code, json.loads(out) if code == 0 else out, err


def _feedback_rows(url: str) -> int:
    engine = open_store(url)
    with engine.connect() as conn:
        n = int(conn.scalar(select(func.count()).select_from(Feedback)) or 0)
    engine.dispose()
    return n


def test_redact_stores_placeholders_and_counts(data: Path, sqlite_url: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, summary, err = _import(data, sqlite_url, capsys, "--pii-default", "redact")
    assert code == 0, err
    assert summary["feedback_added"] == 3
    assert summary["redaction"] == {"policy": "redact", "texts": 11, "changed": 3, "rejected": 0,
                                    "entities": {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 2}}
    stored = store_text(sqlite_url)
    assert EMAIL not in stored and "7946" not in stored
    assert "Please email <EMAIL_ADDRESS> the invoice." in stored
    assert "I will call <PHONE_NUMBER>." in stored
    # the audit log has the counts, never the content
    assert '"EMAIL_ADDRESS": 2' in stored or "'EMAIL_ADDRESS': 2" in stored
    # re-importing redacts alike and adds nothing
    code, again, _ = _import(data, sqlite_url, capsys, "--pii-default", "redact")
    assert code == 0 and again["feedback_added"] == 0 and again["feedback_existing"] == 3


def test_hash_links_equal_values(data: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLINE_PII_SALT", "s3cret")
    code, summary, err = _import(data, sqlite_url, capsys, "--pii-default", "hash")
    assert code == 0, err
    assert summary["redaction"]["changed"] == 3
    stored = store_text(sqlite_url)
    assert EMAIL not in stored and "7946" not in stored
    emails = {s.split(">")[0] for s in stored.split("<EMAIL_ADDRESS:")[1:]}
    phones = {s.split(">")[0] for s in stored.split("<PHONE_NUMBER:")[1:]}
    assert len(emails) == 1 and len(phones) == 1  # the same address in two records: one hash


def test_hash_without_salt_fails_before_reading(data: Path, sqlite_url: str,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFLINE_PII_SALT", raising=False)
    code, out, err = _import(data, sqlite_url, capsys, "--pii-default", "hash")
    assert code == 2 and "needs a secret salt in $PREFLINE_PII_SALT" in err


def test_reject_fails_whole_file_naming_line_field_and_type(
        data: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _import(data, sqlite_url, capsys, "--pii-default", "reject")
    assert code == 2
    assert f"{data}, line 1, field 'prompt': holds personal data (EMAIL_ADDRESS)" in err
    assert "source 'support.jsonl'" in err and "--on-bad skip" in err
    assert EMAIL not in err
    assert _feedback_rows(sqlite_url) == 0  # nothing half-written


def test_reject_skip_stores_the_clean_records_only(data: Path, sqlite_url: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, summary, err = _import(data, sqlite_url, capsys, "--pii-default", "reject",
                                 "--on-bad", "skip")
    assert code == 0, err
    assert summary["feedback_added"] == 1 and summary["rejected"] == 2
    assert summary["redaction"]["rejected"] == 2 and summary["redaction"]["changed"] == 0
    rejects = [json.loads(line) for line in Path(summary["rejects_path"]).read_text().splitlines()]
    assert [(r["line"], r["reason"].split(":")[0]) for r in rejects] == [
        (1, "field 'prompt'"), (3, "field 'prompt[2].content'")]
    assert all(EMAIL not in r["reason"] and "7946" not in r["reason"] for r in rejects)
    stored = store_text(sqlite_url)
    assert EMAIL not in stored and "7946" not in stored and "What is 12 * 7?" in stored


def test_keep_and_the_per_source_map(data: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    kept = f"sqlite:///{tmp_path / 'kept.db'}"
    code, summary, err = _import(data, kept, capsys)
    assert code == 0 and summary["redaction"] is None and EMAIL in store_text(kept)
    policies = json.dumps({"vendor-*": "redact", "support.jsonl": "keep"})
    mapped = f"sqlite:///{tmp_path / 'mapped.db'}"
    code, summary, err = _import(data, mapped, capsys, "--pii-policies", policies,
                                 "--source", "vendor-7", "--pii-default", "reject")
    assert code == 0, err
    assert summary["redaction"]["policy"] == "redact" and EMAIL not in store_text(mapped)


def test_bad_policy_name_is_a_clear_error(data: Path, sqlite_url: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _import(data, sqlite_url, capsys, "--pii-policies", '{"api:*": "scrub"}')
    assert code == 2
    assert ("field 'pii_policies.api:*': unknown redaction policy 'scrub'; expected one of "
            "redact, hash, reject, keep") in err
