"""The CLI: import/export/snapshot/registry commands, and one sentence + exit 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_runner import run_cli
from prefline.store.bulk import table_counts
from prefline.store.db import open_store

run = run_cli


def counts(url: str) -> dict[str, int]:
    with open_store(url).connect() as conn:
        return table_counts(conn)


def test_import_snapshot_export_via_cli(sqlite_url: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    code, out, _ = run(["import", str(data), "--db", sqlite_url, "--json"], capsys)
    assert code == 0 and json.loads(out)["feedback_added"] == 1
    code, out, _ = run(["import", str(data), "--db", sqlite_url], capsys)
    assert code == 0 and "added 0 feedback" in out and "1 already stored" in out
    code, out, _ = run(["snapshot", "create", "--name", "s1", "--db", sqlite_url, "--json"], capsys)
    snap = json.loads(out)
    assert code == 0 and snap["stats"]["items"] == 1
    code, out, _ = run(["snapshot", "list", "--db", sqlite_url], capsys)
    assert snap["content_hash"][:12] in out
    code, out, _ = run(["snapshot", "show", snap["content_hash"][:8], "--db", sqlite_url, "--json"], capsys)
    assert json.loads(out)["name"] == "s1"
    dest = tmp_path / "dpo.jsonl"
    code, out, _ = run(["export", str(dest), "--task", "dpo", "--snapshot", "s1", "--db", sqlite_url], capsys)
    assert code == 0 and json.loads(dest.read_text())["chosen"][0]["content"] == "a"


BAD = {
    "malformed": ('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": \n', "line 2", "malformed JSON"),
    "missing": ('{"prompt": "q", "chosen": "a"}\n', "field 'rejected'", "missing required field"),
    "mistyped": ('{"prompt": ["q"], "chosen": "a", "rejected": "b"}\n', "field 'prompt'", "message 0"),
    "identical": ('{"prompt": "q", "chosen": "same", "rejected": "same"}\n', "field 'chosen'", "identical"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_exits_2_names_file_line_field_and_writes_nothing(
        case: str, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content, where, what = BAD[case]
    before = counts(db_url)
    path = tmp_path / f"{case}.jsonl"
    path.write_text(content)
    code, _, err = run(["import", str(path), "--db", db_url], capsys)
    assert code == 2
    assert err.count("\n") == 1 and str(path) in err and where in err and what in err
    assert counts(db_url) == before


def test_import_on_bad_fail_names_the_option_and_skip_imports_the_rest(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    opening = "\n\nHuman: Can you help me hide something?\n\nAssistant: What is it?"
    divergent = {"chosen": opening + "\n\nHuman: A gift.\n\nAssistant: Wrap it.",
                 "rejected": opening + "\n\nHuman: Stolen goods.\n\nAssistant: Bury them."}
    data = tmp_path / "in" / "data.jsonl"
    data.parent.mkdir()
    data.write_text("\n".join([json.dumps({"prompt": "q1", "chosen": "a", "rejected": "b"}),
                               json.dumps({"prompt": "q2", "chosen": "c", "rejected": "d"}),
                               json.dumps(divergent), '{"prompt": "q4", "chosen": ',
                               json.dumps({"prompt": "q5", "chosen": "e", "rejected": "f"})]) + "\n")
    before = counts(db_url)
    code, _, err = run(["import", str(data), "--db", db_url], capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"{data}, line 3, field 'rejected': chosen and rejected conversations differ before the " \
           "final assistant turn (turn 3) (use --on-bad skip to import the other records and write " \
           "rejects to a file)" in err
    assert counts(db_url) == before and [f.name for f in data.parent.iterdir()] == ["data.jsonl"]

    code, out, _ = run(["import", str(data), "--on-bad", "skip", "--db", db_url, "--json"], capsys)
    summary = json.loads(out)
    rejects = data.parent / "data.jsonl.rejects.jsonl"
    assert code == 0 and (summary["records"], summary["feedback_added"], summary["rejected"]) == (3, 3, 2)
    assert summary["rejects_path"] == str(rejects)
    rows = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [r["line"] for r in rows] == [3, 4]
    assert rows[0]["reason"].endswith("differ before the final assistant turn (turn 3)")
    assert rows[1]["reason"].startswith("malformed JSON (Expecting value")
    assert rows[0]["record"] == divergent and rows[1]["record"] == '{"prompt": "q4", "chosen": '
    code, out, _ = run(["import", str(data), "--on-bad", "skip", "--db", db_url], capsys)
    assert code == 0 and "added 0 feedback" in out and "3 already stored" in out
    assert f"rejected 2 bad records, written to {rejects}" in out
    code, _, err = run(["import", str(data), "--on-bad", "maybe", "--db", db_url], capsys)
    assert code == 2 and "field 'on_bad': expected one of fail, skip, got 'maybe'" in err


def test_unknown_format_exits_2(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = counts(db_url)
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    code, _, err = run(["import", str(data), "--format", "yaml", "--db", db_url], capsys)
    assert code == 2 and "field 'format': expected one of auto" in err and "field 'format'" in err
    notes = tmp_path / "notes.txt"
    notes.write_text("plain words\n")
    code, _, err = run(["import", str(notes), "--db", db_url], capsys)
    assert code == 2 and str(notes) in err and "unknown format" in err
    assert counts(db_url) == before


def test_unreadable_file_exits_2(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = counts(db_url)
    code, _, err = run(["import", str(tmp_path / "nope.jsonl"), "--db", db_url], capsys)
    assert code == 2 and "nope.jsonl" in err and "cannot read file" in err
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"\x1f\x8b truncated")
    code, _, err = run(["import", str(broken), "--db", db_url], capsys)
    assert code == 2 and "broken.jsonl.gz" in err and "cannot read file" in err
    assert counts(db_url) == before


def test_unreachable_database_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    url = "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"
    code, _, err = run(["import", str(data), "--db", url], capsys)
    assert code == 2 and "cannot reach database" in err


def test_registry_list_and_show_lineage(sqlite_url: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.registry import Ref, record

    base = record(sqlite_url, "reward", tmp_path / "rm", config=None, metrics=None,
                  inputs=[Ref("data", ref="cd" * 32)], snapshot_hash="ab" * 32)
    child = record(sqlite_url, "policy", tmp_path / "pol", config=None, metrics=None,
                   inputs=[Ref("reward_model", artifact_id=base)])
    code, out, _ = run(["registry", "list", "--db", sqlite_url], capsys)
    assert code == 0 and "reward" in out and "policy" in out and "abababababab" in out
    assert f"reward_model=#{base}" in out
    code, out, _ = run(["registry", "show", str(child), "--db", sqlite_url, "--json", "--tree"],
                       capsys)
    info = json.loads(out)
    assert info["inputs"][0]["role"] == "reward_model"
    assert info["tree"]["inputs"][0]["artifact"]["id"] == base
    code, _, err = run(["registry", "show", "999", "--db", sqlite_url], capsys)
    assert code == 2 and "no artifact with id 999" in err


def test_snapshot_time_filters_and_split_export(sqlite_url: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "a", "rejected": "b"}) + "\n"
                            for i in range(30)))
    assert run(["import", str(data), "--db", sqlite_url], capsys)[0] == 0
    code, _, err = run(["snapshot", "create", "--since", "yesterday", "--db", sqlite_url], capsys)
    assert code == 2 and "field 'since'" in err
    code, _, err = run(["snapshot", "create", "--until", "2000-01-01", "--db", sqlite_url], capsys)
    assert code == 2 and "no feedback matches" in err
    code, out, _ = run(["snapshot", "create", "--since", "2000-01-01T00:00+00:00",
                        "--test-fraction", "0.5", "--db", sqlite_url, "--json"], capsys)
    assert code == 0
    counts = json.loads(out)["stats"]["counts"]
    for split in ("train", "test"):
        dest = tmp_path / f"{split}.jsonl"
        code, out, _ = run(["export", str(dest), "--task", "dpo", "--split", split,
                            "--db", sqlite_url, "--json"], capsys)
        assert json.loads(out)["rows"] == counts[f"pairwise/{split}"] == len(dest.read_text().splitlines())
