"""Recall and precision on the labelled PII set (tests/data/pii/cases.jsonl): the set is what
its seeded generator writes, and the redactor finds at least 95% of its pattern entities."""

from __future__ import annotations

import json
from pathlib import Path

from tests.data.pii.make import cases
from tests.pii.conftest import redactor

from prefline.pii.evaluate import Label, Scores, evaluate, overlaps, render
from prefline.pii.redactor import Detector, Found

CASES = Path(__file__).parents[1] / "data" / "pii" / "cases.jsonl"


def test_the_set_is_reproducible_and_labelled_right() -> None:
    rows = [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines()]
    assert rows == cases()  # committed file == seeded generator output
    assert len(rows) >= 200 and sum(r["kind"] == "negative" for r in rows) >= 50
    for row in rows:  # spans are inside the text and never empty
        for e in row["entities"]:
            assert 0 <= e["start"] < e["end"] <= len(row["text"]), row


def test_recall_on_pattern_entities_is_at_least_95_percent(detector: Detector) -> None:
    result = evaluate(redactor(detector), CASES).to_json()
    print(render(result))  # the per-type table (pytest -s, or on failure below)
    table = render(result)
    assert result["recall"] >= 0.95, table
    assert result["precision"] >= 0.9, table
    assert set(result["per_type"]) == {"ACCOUNT_ID", "CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE",
                                       "IP_ADDRESS", "PHONE_NUMBER", "SECRET", "US_SSN"}, table
    assert all(row["recall"] >= 0.9 for row in result["per_type"].values()), table


def test_overlap_rule_and_scores_by_hand() -> None:
    gold = Label("PHONE_NUMBER", 10, 26)  # 16 characters
    assert overlaps(gold, Found("PHONE_NUMBER", 11, 26))  # without the "+": 15 of 16 shared
    assert not overlaps(gold, Found("PHONE_NUMBER", 10, 17))  # a fragment: 7 of 16
    assert not overlaps(gold, Found("PHONE_NUMBER", 0, 40))  # 16 of 40: swallowed in a longer one
    s = Scores()
    s.add([gold, Label("EMAIL_ADDRESS", 30, 40)],
          [Found("PHONE_NUMBER", 11, 26), Found("US_SSN", 30, 40), Found("URL", 50, 60)], case=0)
    s.add([], [Found("PHONE_NUMBER", 0, 9)], case=1)  # a hard negative flagged
    out = s.to_json()
    assert out["per_type"]["PHONE_NUMBER"] == {"labels": 1, "found": 2, "matched": 1,
                                               "recall": 1.0, "precision": 0.5}
    assert out["per_type"]["EMAIL_ADDRESS"]["recall"] == 0.0
    assert out["recall"] == 0.5 and out["redacted"] == 1.0  # the SSN still hides the e-mail
    assert out["unlabelled_types"] == {"URL": 1}
