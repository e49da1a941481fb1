"""Issue 16: every CLI failure is one sentence. Each command runs with a table of bad
arguments: exit code != 0, exactly one line on stderr naming the problem, no traceback, and
nothing written. Plus the export reproductions: Parquet is real Parquet, and what a task
cannot use is said (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_runner import run_cli
from prefline.cli import main
from prefline.store.db import store_stats

DATA = ('{"prompt": "q", "chosen": "a", "rejected": "b"}\n'
        '{"prompt": "q2", "responses": ["x", "y", "z"], "order": [2, 0, 1]}\n'
        '{"prompt": "q3", "response": "r", "scores": {"helpful": 4}}\n')

# (args with {db}, {tmp}, {data}, {file} placeholders; what the sentence must say). --db
# STORE is added to commands that take it, so "nothing written" covers the store too.
BAD: dict[str, tuple[list[str], str]] = {
    "import missing file": (["import", "{tmp}/nope.jsonl"], "no such file"),
    "import unknown format": (["import", "{data}", "--format", "yaml"], "field 'format'"),
    "import bad on-bad": (["import", "{data}", "--on-bad", "maybe"], "on_bad"),
    "import mysql": (["import", "{data}", "--db", "mysql://u@localhost/x"],
                     "unsupported database URL scheme 'mysql://'"),
    "snapshot mysql": (["snapshot", "create", "--db", "mysql+pymysql://u@h/x"],
                       "unsupported database URL scheme"),
    "db stats oracle": (["db", "stats", "--db", "oracle://u@h/x"],
                        "unsupported database URL scheme"),
    "db upgrade missing folder": (["db", "upgrade", "--db", "{tmp}/no/such/dir/s.db"],
                                  "does not exist"),
    "export to a folder": (["export", "{tmp}", "--task", "dpo"], "is a folder"),
    "export csv": (["export", "{tmp}/out.csv", "--task", "dpo"], "cannot write '.csv' files"),
    "export no suffix": (["export", "{tmp}/out", "--task", "dpo"], "no suffix"),
    "export under a file": (["export", "{file}/out.jsonl", "--task", "dpo"], "cannot write the file"),
    "export unknown task": (["export", "{tmp}/o.jsonl", "--task", "sft"], "got 'sft'"),
    "export unknown snapshot": (["export", "{tmp}/o.jsonl", "--task", "dpo", "--snapshot", "v9"],
                                "v9"),
    "audit report folder missing": (["audit", "--report", "{tmp}/no/r.html"], "field 'report'"),
    "audit report twice": (["audit", "--report", "{tmp}/a.html", "--out", "{tmp}/b.html"],
                           "give the report file once"),
    "users disable unknown": (["users", "disable", "nobody"], "no user named 'nobody'"),
    "users reset short": (["users", "reset-password", "ann", "--password", "short"],
                          "at least 8 characters"),
    "keys revoke unknown": (["keys", "revoke", "nokey"], "no API key"),
    "config show unknown": (["config", "show", "nostage"], "unknown stage"),
    "snapshot show unknown": (["snapshot", "show", "nope"], "no snapshot matches 'nope'"),
    "registry show unknown": (["registry", "show", "999"], "no artifact with id 999"),
    "campaign bad kind": (["campaign", "create", "c1", "--kind", "bogus"], "field 'kind'"),
    "train dpo bad lr": (["train", "dpo", "--lr", "abc"], "field 'train.lr'"),
    "generate missing prompts": (["generate", "--prompts", "{tmp}/nope.jsonl", "--out",
                                  "{tmp}/g.jsonl"], "prompt file not found"),
    # usage errors (typer ships its own click: these were tracebacks)
    "serve port not a number": (["serve", "--port", "abc"], "Invalid value for '--port'"),
    "unknown option": (["cache", "clear", "--bogus"], "No such option: --bogus"),
    "missing argument": (["import", "--db", "{db}"], "Missing argument 'PATH'"),
    "unknown command": (["nosuch"], "No such command 'nosuch'"),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A SQLite store with a pair, a ranking and a rating, a snapshot 's' and a user; built
    once (the cases only read it, and each checks that nothing new was written)."""
    folder = tmp_path_factory.mktemp("store")
    db = str(folder / "s.db")
    data = folder / "d.jsonl"
    data.write_text(DATA, encoding="utf-8")
    for args in (["import", str(data)], ["snapshot", "create", "--name", "s"],
                 ["users", "add", "ann", "--password", "long-enough"]):
        try:
            main([*args, "--db", db])
        except SystemExit as exc:
            assert not exc.code, args
    return db, data


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_arguments_give_one_sentence(case: str, store: tuple[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    db, data = store
    (tmp_path / "plain.txt").write_text("x")
    template, what = BAD[case]
    args = [a.format(tmp=tmp_path, data=data, file=tmp_path / "plain.txt", db=db)
            for a in template]
    if "--db" not in args and args[0] not in ("serve", "cache", "nosuch"):  # no --db there
        args += ["--db", db]
    before = sorted(p.name for p in tmp_path.iterdir()), store_stats(db)
    code, out, err = run_cli(args, capsys)
    assert code != 0 and "Traceback" not in err + out
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert what in err, err
    # nothing written: no file, and no row (audit_log included)
    assert (sorted(p.name for p in tmp_path.iterdir()), store_stats(db)) == before


def test_export_parquet_is_parquet_and_dpo_says_what_it_left_out(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    data = tmp_path / "d.jsonl"
    data.write_text(DATA, encoding="utf-8")
    for args in (["import", str(data)], ["snapshot", "create"]):
        assert run_cli([*args, "--db", db_url], capsys)[0] == 0
    out_file = tmp_path / "x.parquet"
    code, out, err = run_cli(["export", str(out_file), "--task", "dpo", "--db", db_url], capsys)
    assert code == 0, err
    assert out_file.read_bytes()[:4] == b"PAR1"
    rows = pq.read_table(out_file).to_pylist()
    # the pair, plus the ranking's 3 implied pairs; the rating has no use for DPO
    assert len(rows) == 4 and rows[0]["chosen"] == [{"role": "assistant", "content": "a"}]
    assert "expanded 1 ranking items into 3 pairs" in out
    assert "left out rating items: 1 the dpo task has no use for rating items" in out
    code, out, _ = run_cli(["export", str(tmp_path / "x.jsonl"), "--task", "dpo", "--json",
                            "--db", db_url], capsys)
    result = json.loads(out)
    assert result["ignored_by_kind"] == {"rating": {"the dpo task has no use for rating items": 1}}
    assert result["pairs_from_rankings"] == 3
