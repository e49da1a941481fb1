"""Snapshots: consensus, ties policy, prompt-grouped split, content hash stability."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefline.base.errors import PreflineError
from prefline.formats.examples import PreferencePair
from prefline.formats.jsonl import write_jsonl
from prefline.store.ingest import import_file
from prefline.store.snapshots import (
    Filters,
    create_snapshot,
    list_snapshots,
    snapshot_examples,
    snapshot_items,
)


def votes_file(tmp_path: Path) -> Path:
    """Pair (q, a, b) judged by three annotators: two prefer a, one calls it a tie; pair
    (q, a, c) split 1-1 between two annotators; pair (r, x, y) judged once by an AI judge."""
    rows = [
        {"prompt": "q", "chosen": "a", "rejected": "b", "annotator": "h1"},
        {"prompt": "q", "chosen": "b", "rejected": "a", "annotator": "h2"},
        {"prompt": "q", "chosen": "a", "rejected": "b", "annotator": "h2"},  # h2 changed its mind
        {"prompt": "q", "chosen": "a", "rejected": "b", "annotator": "h3", "tie": True},
        {"prompt": "q", "chosen": "a", "rejected": "c", "annotator": "h1"},
        {"prompt": "q", "chosen": "c", "rejected": "a", "annotator": "h2"},
        {"prompt": "r", "chosen": "x", "rejected": "y", "annotator": "j", "annotator_kind": "ai_judge",
         "tags": ["judge"]},
    ]
    return write_jsonl(tmp_path / "votes.jsonl", rows)


def pairs(snap_id: int, db: str, split: str = "all") -> list[PreferencePair]:
    out = snapshot_examples(snap_id, split, db)
    assert all(isinstance(p, PreferencePair) for p in out)
    return out  # type: ignore[return-value]


def test_majority_consensus_and_ties_policies(db_url: str, tmp_path: Path) -> None:
    import_file(votes_file(tmp_path), db_url)
    dropped = pairs(create_snapshot(db_url, ties="drop", test_fraction=0.0).id, db_url)
    by_prompt = {(p.prompt[0]["content"], p.chosen, p.rejected): p for p in dropped}
    assert set(by_prompt) == {("q", "a", "b"), ("r", "x", "y")}  # the 1-1 split pair is a tie
    assert by_prompt[("q", "a", "b")].strength == pytest.approx(2 / 3)
    kept = pairs(create_snapshot(db_url, ties="keep", test_fraction=0.0).id, db_url)
    assert [(p.chosen, p.rejected, p.tie) for p in kept if p.tie] == [("a", "c", True)]
    bt = pairs(create_snapshot(db_url, aggregate="bt", test_fraction=0.0).id, db_url)
    assert {(p.chosen, p.rejected) for p in bt} >= {("a", "b"), ("x", "y")}


def test_filters_select_feedback(db_url: str, tmp_path: Path) -> None:
    import_file(votes_file(tmp_path), db_url)
    judge = pairs(create_snapshot(db_url, filters=Filters(annotator_kind="ai_judge")).id, db_url)
    assert [(p.chosen, p.rejected) for p in judge] == [("x", "y")]
    tagged = create_snapshot(db_url, filters=Filters(tag="judge"))
    assert tagged.stats["feedback"] == 1
    with pytest.raises(PreflineError, match="no feedback matches"):
        create_snapshot(db_url, filters=Filters(source="other.jsonl"))


def test_hash_stable_for_same_content_and_changes_with_content(db_url: str, tmp_path: Path) -> None:
    import_file(votes_file(tmp_path), db_url)
    first = create_snapshot(db_url, name="one")
    again = create_snapshot(db_url, name="two")
    assert again.id == first.id and again.content_hash == first.content_hash
    assert len(list_snapshots(db_url)) == 1
    other_split = create_snapshot(db_url, test_fraction=0.5, seed=3)
    import_file(write_jsonl(tmp_path / "more.jsonl", [{"prompt": "s", "chosen": "1", "rejected": "2"}]), db_url)
    grown = create_snapshot(db_url)
    assert len({first.content_hash, other_split.content_hash, grown.content_hash}) == 3


def test_same_content_same_hash_across_stores(tmp_path: Path) -> None:
    path = votes_file(tmp_path)
    hashes = []
    for name in ("a.db", "b.db"):
        url = f"sqlite:///{tmp_path / name}"
        import_file(path, url)
        hashes.append(create_snapshot(url).content_hash)
    assert hashes[0] == hashes[1]


def test_split_is_grouped_by_prompt(sqlite_url: str, tmp_path: Path) -> None:
    rows = [{"prompt": f"p{i % 40}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(200)]
    import_file(write_jsonl(tmp_path / "d.jsonl", rows), sqlite_url)
    snap = create_snapshot(sqlite_url, test_fraction=0.3, seed=1)
    items = snapshot_items(snap.id, "all", sqlite_url)
    train = {i["data"]["prompt_key"] for i in items if i["split"] == "train"}
    test = {i["data"]["prompt_key"] for i in items if i["split"] == "test"}
    assert train and test and not train & test
    assert len(train | test) == 40 and 4 <= len(test) <= 22
    assert len(pairs(snap.id, sqlite_url, "test")) + len(pairs(snap.id, sqlite_url, "train")) == 200


def test_bad_snapshot_arguments(sqlite_url: str) -> None:
    for kwargs, needle in (({"aggregate": "mean"}, "aggregate"), ({"ties": "ignore"}, "ties"),
                           ({"test_fraction": 1.5}, "test fraction")):
        with pytest.raises(PreflineError, match=needle):
            create_snapshot(sqlite_url, **kwargs)  # type: ignore[arg-type]
