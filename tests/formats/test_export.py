"""Export writes TRL shapes; import → snapshot → export gives back the same pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefline.base.errors import PreflineError
from prefline.formats.jsonl import write_jsonl
from prefline.formats.load import load_examples, load_pairs
from prefline.store.context import Context, Store
from prefline.store.export_stage import ExportConfig
from prefline.store.export_stage import run as export_run
from prefline.store.ingest import import_file
from prefline.store.snapshots import create_snapshot


def export_snapshot(out: Path, task: str, snapshot: int, db: str, style: str = "conversational",
                    ) -> int:
    """The export stage, as the CLI runs it."""
    cfg = ExportConfig(out=str(out), task=task, snapshot=str(snapshot),  # type: ignore[arg-type]
                       style=style)  # type: ignore[arg-type]
    return export_run(cfg, Context(store=Store.open(db))).rows


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


ROWS = [
    {"prompt": "q1", "chosen": "a", "rejected": "b"},
    {"prompt": "q2", "chosen": "c", "rejected": "d", "tie": True},
    {"prompt": "q3", "completion": "e", "label": False},
    {"prompt": "q4", "responses": ["x", "y"], "order": [1, 0]},
]


def test_each_task_writes_its_trl_shape(sqlite_url: str, tmp_path: Path) -> None:
    import_file(write_jsonl(tmp_path / "d.jsonl", ROWS), sqlite_url)
    snap = create_snapshot(sqlite_url, ties="keep", test_fraction=0.0)
    out = tmp_path / "out.jsonl"
    export_snapshot(out, "dpo", snap.id, db=sqlite_url)
    assert read_jsonl(out)[0] == {"prompt": [{"role": "user", "content": "q1"}],
                                  "chosen": [{"role": "assistant", "content": "a"}],
                                  "rejected": [{"role": "assistant", "content": "b"}]}
    export_snapshot(out, "dpo", snap.id, db=sqlite_url, style="standard")
    # the tie is left out; the ranking becomes the pair it implies (best first)
    assert read_jsonl(out) == [{"prompt": "q1", "chosen": "a", "rejected": "b"},
                               {"prompt": "q4", "chosen": "y", "rejected": "x"}]
    export_snapshot(out, "reward", snap.id, db=sqlite_url)
    row = read_jsonl(out)[0]
    assert row["chosen"] == [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a"}]
    export_snapshot(out, "kto", snap.id, db=sqlite_url, style="standard")
    assert sorted((r["prompt"], r["completion"], r["label"]) for r in read_jsonl(out)) == [
        ("q1", "a", True), ("q1", "b", False), ("q3", "e", False)]
    export_snapshot(out, "ranking", snap.id, db=sqlite_url, style="standard")
    assert read_jsonl(out) == [{"prompt": "q4", "responses": ["y", "x"], "order": [0, 1]}]
    # Every conversational export reads back through the importers.
    for task in ("dpo", "reward", "kto", "ranking"):
        export_snapshot(out, task, snap.id, db=sqlite_url)
        assert load_examples(out), task


def test_export_refuses_unknown_task_and_keeps_old_file(sqlite_url: str, tmp_path: Path) -> None:
    import_file(write_jsonl(tmp_path / "d.jsonl", ROWS[:1]), sqlite_url)
    snap = create_snapshot(sqlite_url)
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    with pytest.raises(PreflineError, match="unknown task"):
        export_snapshot(out, "sft", snap.id, db=sqlite_url)
    with pytest.raises(PreflineError, match="no all items usable for task 'ranking'"):
        export_snapshot(out, "ranking", snap.id, db=sqlite_url)
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_shared_hh_file_round_trips(db_url: str, hh_file: Path, tmp_path: Path) -> None:
    original = load_pairs(hh_file)
    import_file(hh_file, db_url)
    snap = create_snapshot(db_url, test_fraction=0.0)
    export_snapshot(tmp_path / "dpo.jsonl", "dpo", snap.id, db=db_url)
    export_snapshot(tmp_path / "rm.jsonl", "reward", snap.id, db=db_url)
    for name in ("dpo.jsonl", "rm.jsonl"):
        back = load_pairs(tmp_path / name)
        assert sorted(map(repr, back)) == sorted(map(repr, original)), name


# A plain answer that opens with "\n\nHuman:" reads as an HH transcript, so keep clear of it;
# blank texts, NUL and lone surrogates are refused at import (tests/formats/test_shapes_*).
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=12).filter(lambda s: s.strip() != "" and not s.startswith("\n\n"))
pair = st.tuples(texts, texts, texts).filter(lambda t: t[1] != t[2])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(pair, min_size=1, max_size=8, unique_by=lambda t: (t[0], frozenset(t[1:]))))
def test_round_trip_property(rows: list[tuple[str, str, str]], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Any set of distinct pairs (one judgment each) survives import → snapshot → export."""
    tmp = tmp_path_factory.mktemp("rt")
    url = f"sqlite:///{tmp / 's.db'}"
    src = write_jsonl(tmp / "in.jsonl", [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in rows])
    import_file(src, url)
    export_snapshot(tmp / "out.jsonl", "dpo", create_snapshot(url, test_fraction=0.3).id, db=url)
    assert sorted(map(repr, load_pairs(tmp / "out.jsonl"))) == sorted(map(repr, load_pairs(src)))


def test_exports_agree_with_trl_data_utils(sqlite_url: str, hh_file: Path, tmp_path: Path) -> None:
    """TRL as the oracle: its prompt extraction on our reward export gives our DPO export,
    and its unpairing of our DPO export gives our KTO export."""
    from datasets import Dataset
    from trl.data_utils import extract_prompt, is_conversational, unpair_preference_dataset

    import_file(hh_file, sqlite_url)
    snap = create_snapshot(sqlite_url, test_fraction=0.0)
    files = {}
    for task in ("dpo", "reward", "kto"):
        export_snapshot(tmp_path / f"{task}.jsonl", task, snap.id, db=sqlite_url)
        files[task] = read_jsonl(tmp_path / f"{task}.jsonl")
    assert all(is_conversational(rows[0]) for rows in files.values())
    assert [extract_prompt(r) for r in files["reward"]] == files["dpo"]
    unpaired = unpair_preference_dataset(Dataset.from_list(files["dpo"])).to_list()
    key = json.dumps
    assert sorted(map(key, unpaired)) == sorted(map(key, files["kto"]))
