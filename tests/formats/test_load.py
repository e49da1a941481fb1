"""Every importer family reads into the same typed examples; bad input names file/line/field."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.formats.examples import (
    PreferencePair,
    RankingExample,
    RatingExample,
    UnpairedExample,
)
from prefline.formats.hh import parse_transcript
from prefline.formats.jsonl import write_jsonl
from prefline.formats.load import load_examples, load_pairs
from prefline.formats.records import messages_json, prompt_key

USER = [{"role": "user", "content": "2+2?"}]
PAIR = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}



def test_jsonl_strings_and_messages_give_the_same_pair(tmp_path: Path) -> None:
    conv = {"prompt": USER, "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}]}
    a, b = load_pairs(write_jsonl(tmp_path / "d.jsonl", [PAIR, conv]))
    assert a == b
    assert a == PreferencePair(prompt=USER, chosen="4", rejected="5", prompt_key=prompt_key(USER))


def test_trl_implicit_prompt_shared_prefix_is_the_prompt(tmp_path: Path) -> None:
    turns = [{"role": "system", "content": "be brief"}, *USER]
    rec = {"chosen": [*turns, {"role": "assistant", "content": "4"}],
           "rejected": [*turns, {"role": "assistant", "content": "5"}], "tie": True}
    (pair,) = load_pairs(write_jsonl(tmp_path / "d.jsonl", [rec]))
    assert pair.prompt == turns and (pair.chosen, pair.rejected, pair.tie) == ("4", "5", True)


def test_hh_transcripts_gzip_split_into_turns(tmp_path: Path) -> None:
    rec = {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant: 4",
           "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant: 5"}
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps(rec) + "\n")
    for fmt in ("auto", "hh"):
        (pair,) = load_pairs(path, fmt)
        assert [m["role"] for m in pair.prompt] == ["user", "assistant", "user"]
        assert pair.prompt[1]["content"] == "hello" and pair.chosen == "4"


def test_prompt_key_is_the_content_hash_of_the_messages() -> None:
    msgs = [{"role": "system", "content": 'quote " slash \\ tab \t'},
            {"role": "user", "content": "naïve – 日本 \u2028 😀"}]
    assert prompt_key(msgs) == content_hash(msgs)
    assert json.loads(messages_json(msgs)) == msgs


def test_hh_trailing_empty_assistant_is_dropped_only_in_prompts() -> None:
    assert parse_transcript("\n\nHuman: q\n\nAssistant:") == [{"role": "user", "content": "q"}]
    assert parse_transcript("\n\nHuman: q\n\nAssistant:", keep_empty_reply=True)[-1] == \
        {"role": "assistant", "content": ""}


def test_unpaired_ranking_rating_shapes(tmp_path: Path) -> None:
    rows = [
        {"prompt": "q", "completion": "a", "label": False},
        {"prompt": "q", "responses": ["x", "y", "z"], "order": [2, 0, 1]},
        {"prompt": "q", "response": "a", "scores": {"helpful": 4, "honest": 5}},
    ]
    u, r, s = load_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    assert isinstance(u, UnpairedExample) and u.label is False
    assert isinstance(r, RankingExample) and r.responses == ("z", "x", "y")
    assert isinstance(s, RatingExample) and s.scores == {"helpful": 4.0, "honest": 5.0}
    pairs = load_pairs(write_jsonl(tmp_path / "r.jsonl", rows[1:2]))
    assert [(p.chosen, p.rejected) for p in pairs] == [("z", "x"), ("z", "y"), ("x", "y")]


def test_json_array_csv_parquet_and_hf_dataset(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    # Parquet/HF columns hold one type, so messages travel JSON-encoded there (as in CSV).
    rows = [{**PAIR, "tie": False},
            {"prompt": json.dumps(USER), "chosen": "four", "rejected": "5", "tie": True}]
    (tmp_path / "d.json").write_text(json.dumps([PAIR, {**rows[1], "prompt": USER}]))
    (tmp_path / "d.csv").write_text(
        'prompt,chosen,rejected,tie\n2+2?,4,5,\n"[{""role"": ""user"", ""content"": ""2+2?""}]",four,5,true\n')
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    for name in ("d.json", "d.csv", "d.parquet", "ds"):
        first, second = load_pairs(tmp_path / name)
        assert first.prompt == second.prompt == USER, name
        assert (second.chosen, second.tie) == ("four", True), name


@pytest.mark.parametrize(("content", "line", "field", "needle"), [
    ('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": \n', 2, None, "malformed JSON"),
    ('{"prompt": "q", "chosen": "a"}\n', 1, "rejected", "missing"),
    ('{"prompt": "q", "chosen": 3, "rejected": "b"}\n', 1, "chosen", "expected a string"),
    ('\n{"prompt": "q", "chosen": "a", "rejected": "a"}\n', 2, "chosen", "identical"),
    ('{"prompt": "q", "completion": "a", "label": "maybe"}\n', 1, "label", "true or false"),
    ('{"question": "q"}\n', 1, None, "unknown record format"),
])
def test_bad_records_name_file_line_and_field(tmp_path: Path, content: str, line: int,
                                               field: str | None, needle: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PreflineError, match=needle) as info:
        load_examples(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field)
    assert str(path) in str(info.value) and f"line {line}" in str(info.value)


def test_unknown_format_and_unreadable_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [PAIR])
    with pytest.raises(PreflineError, match="unknown format 'xml'"):
        load_examples(path, "xml")
    with pytest.raises(PreflineError, match="cannot read file"):
        load_examples(tmp_path / "missing.jsonl")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PreflineError, match="unknown format"):
        load_examples(tmp_path / "notes.txt")
    (tmp_path / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(PreflineError, match="cannot read file"):
        load_examples(tmp_path / "broken.jsonl.gz")


def test_load_pairs_refuses_unpaired_records(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [PAIR, {"prompt": "q", "completion": "a", "label": True}])
    with pytest.raises(PreflineError, match="line 2"):
        load_pairs(path)


def test_shared_hh_file_loads_every_record(hh_file: Path) -> None:
    pairs = load_pairs(hh_file)
    assert len(pairs) == 800
    assert all(p.prompt[0]["role"] == "user" and p.chosen != p.rejected for p in pairs)
    assert all("\n\nHuman:" not in m["content"] for p in pairs for m in p.prompt)


def test_prompt_column_plus_full_conversations_is_not_doubled(tmp_path: Path) -> None:
    rec = {"prompt": USER, "chosen": [*USER, {"role": "assistant", "content": "4"}],
           "rejected": [*USER, {"role": "assistant", "content": "5"}]}
    (pair,) = load_pairs(write_jsonl(tmp_path / "d.jsonl", [rec]))
    assert pair.prompt == USER and (pair.chosen, pair.rejected) == ("4", "5")


@pytest.mark.parametrize(("record", "field", "needle"), [
    ({"prompt": "q", "responses": ["x", "y"], "order": [0, 0]}, "order", "permutation"),
    ({"prompt": "q", "responses": ["x", "x"], "order": [0, 1]}, "responses", "distinct"),
    ({"prompt": "q", "response": "r", "scores": {"helpful": "high"}}, "scores", "criterion: number"),
    ({"prompt": "q", "chosen": "a", "rejected": "b", "tie": "yes"}, "tie", "true or false"),
    ({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
      "rejected": [{"role": "user", "content": "other"}, {"role": "assistant", "content": "b"}]},
     "rejected", r"differ before the final assistant turn \(turn 1\)"),
])
def test_mistyped_shapes_name_their_field(tmp_path: Path, record: dict[str, object], field: str,
                                          needle: str) -> None:
    with pytest.raises(PreflineError, match=needle) as info:
        load_examples(write_jsonl(tmp_path / "d.jsonl", [record]))
    assert (info.value.line, info.value.field) == (1, field)


def test_hh_format_refuses_non_transcripts(tmp_path: Path) -> None:
    with pytest.raises(PreflineError, match="expected an HH transcript") as info:
        load_examples(write_jsonl(tmp_path / "d.jsonl", [PAIR]), "hh")
    assert info.value.field == "chosen"


def test_hf_dataset_dict_reads_every_split(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list([PAIR]),
                 "test": Dataset.from_list([{**PAIR, "chosen": "four"}])}).save_to_disk(str(tmp_path / "dd"))
    assert sorted(p.chosen for p in load_pairs(tmp_path / "dd", "hf")) == ["4", "four"]


def test_on_bad_skip_sets_bad_records_aside_with_line_reason_and_raw_record(tmp_path: Path) -> None:
    from prefline.formats.load import Rejected, load_records

    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"prompt": "q", "chosen": "a", "rejected": "b"}\n'
                     b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n'  # Latin-1, not UTF-8
                     b'\n[1, 2]\n'
                     b'{"prompt": "q", "chosen": "c", "rejected": "c"}\n'
                     b'{"prompt": "q", "chosen": "d", "rejected": "e"\n'
                     b'{"prompt": "r", "chosen": "f", "rejected": "g"}\n')
    rejected: list[Rejected] = []
    records = load_records(path, on_bad="skip", rejected=rejected)
    assert [(r.line, r.example.prompt_key == prompt_key([{"role": "user", "content": p}]))
            for r, p in zip(records, "qr", strict=True)] == [(1, True), (7, True)]
    assert [r.to_row() for r in rejected] == [
        {"line": 2, "reason": "not valid UTF-8 text",
         "record": '{"prompt": "caf\ufffd", "chosen": "a", "rejected": "b"}'},
        {"line": 4, "reason": "expected a JSON object, got list", "record": [1, 2]},
        {"line": 5, "reason": "field 'chosen': chosen is identical to rejected",
         "record": {"prompt": "q", "chosen": "c", "rejected": "c"}},
        {"line": 6, "reason": "malformed JSON (Expecting ',' delimiter at column 47)",
         "record": '{"prompt": "q", "chosen": "d", "rejected": "e"'},
    ]
    with pytest.raises(PreflineError, match="line 2: not valid UTF-8 text"):
        load_records(path)  # the default policy stops at the first bad record


def test_on_bad_skip_reads_csv_and_json_array_rows(tmp_path: Path) -> None:
    from prefline.formats.load import Rejected, load_records

    (tmp_path / "d.csv").write_text("prompt,chosen,rejected\nq,a,b\nq,,b\n")
    (tmp_path / "d.json").write_text(json.dumps([PAIR, {"prompt": "q", "chosen": "a"}]))
    for name, line, reason, record in [
            ("d.csv", 3, "field 'chosen': missing required field", {"prompt": "q", "rejected": "b"}),
            ("d.json", 2, "field 'rejected': missing required field", {"prompt": "q", "chosen": "a"})]:
        rejected: list[Rejected] = []
        assert len(load_records(tmp_path / name, on_bad="skip", rejected=rejected)) == 1
        assert [r.to_row() for r in rejected] == [{"line": line, "reason": reason, "record": record}]


def test_conversations_that_part_early_name_the_turn(tmp_path: Path) -> None:
    opening = "\n\nHuman: hi\n\nAssistant: hello"
    rec = {"chosen": opening + "\n\nHuman: 2+2?\n\nAssistant: 4",
           "rejected": "\n\nHuman: hi\n\nAssistant: hey\n\nHuman: 2+2?\n\nAssistant: 5"}
    shorter = {"chosen": opening + "\n\nHuman: 2+2?\n\nAssistant: 4", "rejected": opening}
    for record, needle in [(rec, "(turn 2)"), (shorter, "(turn 3; chosen has 4 turns, rejected 2)")]:
        with pytest.raises(PreflineError, match="conversations differ before the final assistant turn") as info:
            load_examples(write_jsonl(tmp_path / "d.jsonl", [record]))
        assert needle in str(info.value) and info.value.field == "rejected"
