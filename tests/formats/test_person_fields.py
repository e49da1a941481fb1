"""``user`` and ``segment`` on records (issue 14 item 1): read from JSONL, CSV and Hugging
Face datasets onto the examples; bad values are refused naming the field."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from prefline.formats.examples import PreferencePair, UnpairedExample
from prefline.formats.jsonl import write_jsonl
from prefline.formats.load import load_records
from prefline.formats.records import BadRecord, Where, parse_record

PAIR = {"prompt": "p", "chosen": "short", "rejected": "long answer"}


def _one(rec: dict[str, Any]) -> Any:
    return parse_record(rec, Where("f.jsonl", 3)).example


def test_records_without_person_fields_are_unchanged() -> None:
    ex = _one(PAIR)
    assert ex.user is None and ex.segment == {}
    assert ex == PreferencePair(prompt=[{"role": "user", "content": "p"}], chosen="short",
                                rejected="long answer", prompt_key=ex.prompt_key)


def test_every_shape_takes_user_and_segment() -> None:
    person = {"user": "u-17", "segment": {"style": "concise", "locale": "de"}}
    shapes = [PAIR, {"prompt": "p", "completion": "c", "label": True},
              {"prompt": "p", "responses": ["a", "b"], "order": [1, 0]},
              {"prompt": "p", "response": "r", "scores": {"helpful": 3}}]
    for rec in shapes:
        ex = _one({**rec, **person})
        assert (ex.user, ex.segment) == ("u-17", {"style": "concise", "locale": "de"})


@pytest.mark.parametrize(("extra", "field", "says"), [
    ({"user": 7}, "user", "pseudonymous user id"),
    ({"user": "  "}, "user", "non-empty string"),
    ({"user": "ann@example.org"}, "user", "e-mail"),
    ({"segment": "concise"}, "segment", "object of string attributes"),
    ({"segment": {"style": 1}}, "segment", "object of string attributes"),
    ({"segment": {"": "x"}}, "segment", "object of string attributes"),
])
def test_bad_person_fields_name_the_field(extra: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(BadRecord, match=says) as err:
        _one({**PAIR, **extra})
    assert (err.value.field, err.value.path, err.value.line) == (field, "f.jsonl", 3)


def test_jsonl_csv_and_hf_carry_user_and_segment(tmp_path: Path) -> None:
    rows = [{**PAIR, "user": "u1", "segment": {"style": "concise"}},
            {"prompt": "q", "completion": "c", "label": False, "user": "u2"}]
    jsonl = write_jsonl(tmp_path / "a.jsonl", rows)
    table = tmp_path / "a.csv"
    with table.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["prompt", "chosen", "rejected", "user", "segment"])
        w.writeheader()
        w.writerow({**PAIR, "user": "u1", "segment": json.dumps({"style": "concise"})})
    from datasets import Dataset

    hf = tmp_path / "hf"
    Dataset.from_list([{**PAIR, "user": "u1", "segment": {"style": "concise"}}]).save_to_disk(hf)
    for path in (jsonl, table, hf):
        first = load_records(path)[0].example
        assert isinstance(first, PreferencePair), path
        assert (first.user, first.segment) == ("u1", {"style": "concise"}), path
    second = load_records(jsonl)[1].example
    assert isinstance(second, UnpairedExample) and (second.user, second.segment) == ("u2", {})
