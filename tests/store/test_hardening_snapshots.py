"""Issue 16 reproductions on snapshot names (SQLite and PostgreSQL): `--name v1` twice made
two v1s (export then picked the newer); a name given to content-identical snapshot was never
stored, so `--snapshot v2` failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.cli_runner import run_cli

from prefline.base.errors import PreflineError
from prefline.formats.jsonl import write_jsonl
from prefline.store.context import Context, Store
from prefline.store.db import session_scope
from prefline.store.ingest import import_file
from prefline.store.models import Feedback
from prefline.store.snapshot_config import SnapshotConfig
from prefline.store.snapshots import (
    create_snapshot,
    get_snapshot,
    list_snapshots,
    run,
    snapshot_names,
)

ROWS = [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "r", "chosen": "x",
                                                         "rejected": "y"}]


def _grow(url: str, tmp_path: Path, n: int) -> None:
    """Add one new pair so the next snapshot has other content."""
    import_file(write_jsonl(tmp_path / f"more{n}.jsonl",
                            [{"prompt": f"p{n}", "chosen": "c", "rejected": "d"}]), url)


def test_names_are_unique_replace_moves_and_aliases_stick(db_url: str, tmp_path: Path) -> None:
    import_file(write_jsonl(tmp_path / "votes.jsonl", ROWS), db_url)
    first = create_snapshot(db_url, name="v1", test_fraction=0.0)
    alias = create_snapshot(db_url, name="v2", test_fraction=0.0)  # same content: an alias
    assert alias.id == first.id
    assert get_snapshot("v2", db_url).id == get_snapshot("v1", db_url).id == first.id
    assert snapshot_names(db_url) == {first.id: ["v1", "v2"]}
    create_snapshot(db_url, name="v1", test_fraction=0.0)  # same content, same name: fine
    _grow(db_url, tmp_path, 1)
    with pytest.raises(PreflineError, match=r"'v1' is already taken by snapshot \d+.*--replace"):
        create_snapshot(db_url, name="v1", test_fraction=0.0)
    assert len(list_snapshots(db_url)) == 1  # the refused snapshot was not stored
    with pytest.raises(PreflineError, match="not a number"):
        create_snapshot(db_url, name="42")
    with pytest.raises(PreflineError, match="surrogate"):
        create_snapshot(db_url, name="v\ud800")
    moved = run(SnapshotConfig(name="v1", replace=True, test_fraction=0.0),
                Context(store=Store.open(db_url)))
    assert moved.id != first.id and get_snapshot("v1", db_url).id == moved.id
    assert get_snapshot("v2", db_url).id == first.id
    with pytest.raises(PreflineError, match="no snapshot matches"):
        get_snapshot(str(2**64), db_url)


def test_cli_name_twice_is_one_sentence_and_alias_exports(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import_file(write_jsonl(tmp_path / "votes.jsonl", ROWS), db_url)
    db = ["--db", db_url]
    assert run_cli(["snapshot", "create", "--name", "v1", "--test-fraction", "0", *db],
                   capsys)[0] == 0
    code, out, _ = run_cli(["snapshot", "create", "--name", "v2", "--test-fraction", "0", *db],
                           capsys)
    assert code == 0 and "reused, named 'v2'" in out
    code, _, _ = run_cli(["export", str(tmp_path / "v2.jsonl"), "--task", "dpo",
                          "--snapshot", "v2", *db], capsys)
    assert code == 0 and (tmp_path / "v2.jsonl").read_text().count("\n") == 2
    _grow(db_url, tmp_path, 2)
    code, out, err = run_cli(["snapshot", "create", "--name", "v1", "--test-fraction", "0", *db],
                             capsys)
    assert code != 0 and "already taken" in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1
    code, _, _ = run_cli(["snapshot", "create", "--name", "v1", "--replace", "--test-fraction",
                          "0", *db], capsys)
    assert code == 0
    code, out, _ = run_cli(["snapshot", "list", "--json", *db], capsys)
    assert [s["names"] for s in json.loads(out)] == [["v2"], ["v1"]]


def test_legacy_poisoned_row_is_one_sentence_naming_it(sqlite_url: str, tmp_path: Path) -> None:
    """A store written before issue 16 may hold a lone surrogate (SQLite kept it as a JSON
    escape); a snapshot then names the prompt and field instead of a UnicodeEncodeError."""
    import_file(write_jsonl(tmp_path / "votes.jsonl", ROWS), sqlite_url)
    with session_scope(sqlite_url) as s:
        row = s.scalars(select(Feedback).order_by(Feedback.id)).first()
        assert row is not None
        s.add(Feedback(kind="rating", annotator_id=row.annotator_id, prompt_id=row.prompt_id,
                       response_id=row.response_a_id, payload={"scores": {"c\ud800": 1}},
                       source="legacy"))
    with pytest.raises(PreflineError, match=r"prompt \d+ .*scores key 'c\\ud800'.*delete or"):
        create_snapshot(sqlite_url, kinds=("pairwise", "rating"))
