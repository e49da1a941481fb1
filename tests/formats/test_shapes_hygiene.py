"""Issue 16 reproductions on the import side: BOMs, invalid UTF-8, lone surrogates, empty
texts, unknown roles and repeated lines. A bad file gives one sentence naming file, line and
field, no traceback, and stores nothing; a good one leaves a store that snapshots, audits and
exports (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_runner import run_cli
from prefline.store.bulk import table_counts
from prefline.store.db import open_store

PAIR = '{"prompt": "q", "chosen": "a", "rejected": "b"}'
BOM = b"\xef\xbb\xbf"


def counts(url: str) -> dict[str, int]:
    with open_store(url).connect() as conn:
        return table_counts(conn)


GOOD = {
    "bom.jsonl": BOM + (PAIR + "\n").encode(),
    "bom.json": BOM + f"[{PAIR}]".encode(),
    "bom.csv": BOM + b"prompt,chosen,rejected\nq,a,b\n",
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_utf8_bom_is_accepted(name: str, db_url: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    path.write_bytes(GOOD[name])
    code, out, err = run_cli(["import", str(path), "--db", db_url, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["feedback_added"] == 1


BAD = {
    # CSV with a BOM and an empty cell: the empty field is blamed, not the first column.
    "bom.csv": (BOM + b"prompt,chosen,rejected\nq,a,b\nq2,,c\n", "line 3, field 'chosen'",
                "missing required field"),
    "utf8.jsonl": ((PAIR + "\n" + PAIR + "\n").encode() + b'{"prompt": "q\xff"}\n',
                   "line 3", "not valid UTF-8"),
    "utf8.json": (f"[{PAIR},\n{PAIR},\n".encode() + b'{"prompt": "\xff"}]', "line 3",
                  "not valid UTF-8"),
    "utf8.csv": (b"prompt,chosen,rejected\nq,a,b\nq\xff,a,b\n", "line 3", "not valid UTF-8"),
    "surrogate.jsonl": ((PAIR + "\n").encode() + b'{"prompt": "q\\ud800", "chosen": "a", '
                        b'"rejected": "b"}\n', "line 2, field 'prompt'", "lone surrogate"),
    "surrogate-key.jsonl": (b'{"prompt": "q", "response": "r", "scores": {"c\\ud800": 1}}\n',
                            "line 1, field 'scores key", "lone surrogate"),
    "surrogate-annotator.jsonl": (b'{"prompt": "q", "chosen": "a", "rejected": "b", '
                                  b'"annotator": "x\\udfff"}\n', "field 'annotator'",
                                  "lone surrogate"),
    "nul.jsonl": (b'{"prompt": "q\\u0000", "chosen": "a", "rejected": "b"}\n',
                  "field 'prompt'", "NUL"),
    "empty-prompt.jsonl": (b'{"prompt": "", "chosen": "a", "rejected": "b"}\n',
                           "field 'prompt'", "empty"),
    "blank-response.jsonl": (b'{"prompt": "q", "completion": "  ", "label": true}\n',
                             "field 'completion'", "empty"),
    "role.jsonl": (b'{"prompt": [{"role": "hacker", "content": "q"}], "chosen": "a", '
                   b'"rejected": "b"}\n', "field 'prompt'", "role 'hacker'"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_text_is_one_sentence_and_stores_nothing(name: str, db_url: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    content, where, what = BAD[name]
    before = counts(db_url)
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run_cli(["import", str(path), "--db", db_url], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and str(path) in err and where in err and what in err, err
    assert counts(db_url) == before


def test_skip_keeps_the_good_records_and_the_store_stays_usable(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The critical reproduction: a surrogate in a rating's criterion name must never reach
    the store; with --on-bad skip the rest goes in and snapshot/audit/export still work."""
    path = tmp_path / "mixed.jsonl"
    path.write_bytes((PAIR + "\n").encode()
                     + b'{"prompt": "q", "response": "a", "scores": {"c\\ud800": 1}}\n')
    code, out, err = run_cli(["import", str(path), "--db", db_url, "--on-bad", "skip", "--json"],
                             capsys)
    assert code == 0, err
    assert json.loads(out)["rejected"] == 1
    rejects = (tmp_path / "mixed.jsonl.rejects.jsonl").read_text(encoding="utf-8")
    assert "lone surrogate" in rejects
    for args in (["snapshot", "create"], ["audit", "--report", str(tmp_path / "a.html")],
                 ["export", str(tmp_path / "d.jsonl"), "--task", "dpo"]):
        code, _, err = run_cli([*args, "--db", db_url], capsys)
        assert code == 0, err


def test_repeated_lines_are_one_vote_and_the_audit_agrees(db_url: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    other = '{"prompt": "q", "chosen": "a", "rejected": "b", "annotator": "bob"}'
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join([PAIR, PAIR, other, PAIR]) + "\n", encoding="utf-8")
    code, out, err = run_cli(["import", str(path), "--db", db_url, "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    # bob's identical judgment is his own vote; the default annotator's repeats are not.
    assert summary["records"] == 2 and summary["feedback_added"] == 2
    assert summary["duplicates"] == [[2, 1], [4, 1]]
    code, out, _ = run_cli(["import", str(path), "--db", db_url], capsys)
    assert "counted 2 repeated records once: lines 2 (= line 1), 4 (= line 1)" in out
    assert "added 0 feedback" in out
    code, out, _ = run_cli(["audit", "--db", db_url, "--json"], capsys)
    assert code == 0 and json.loads(out)["scope"]["feedback"] == 2


def test_identifiers_are_nfc_content_is_kept(tmp_path: Path) -> None:
    """Criterion and annotator names typed decomposed ("e" + combining accent) are one name
    with the precomposed spelling; response text stays as given (its hash is its identity)."""
    from prefline.formats.load import load_records

    decomposed, composed = "cre\u0301dible", "cr\u00e9dible"
    path = tmp_path / "nfc.jsonl"
    path.write_text(json.dumps({"prompt": "q", "response": decomposed, "annotator": decomposed,
                                "scores": {decomposed: 1}}) + "\n", encoding="utf-8")
    (rec,) = load_records(path)
    assert rec.annotator == composed and rec.example.scores == {composed: 1.0}  # type: ignore[union-attr]
    assert rec.example.response == decomposed  # type: ignore[union-attr]
