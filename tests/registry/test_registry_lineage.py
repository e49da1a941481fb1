"""lineage_tree / ancestors / render_tree over a graph with a shared ancestor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prefline.base.errors import PreflineError
from prefline.registry import Ref, ancestors, code_version, lineage_tree, record, render_tree
from prefline.store.db import session_scope
from prefline.store.models import ArtifactInput


def build_graph(url: str, tmp: Path, snap: int) -> dict[str, int]:
    """eval ← (ppo ← (snapshot, base model, rm ← snapshot), rm, judge): rm is shared."""
    rm = record(url, "reward_model", tmp / "rm", config=None, metrics=None, name="rm",
                inputs=[Ref("snapshot", snapshot_id=snap)], snapshot_hash="ab" * 32)
    ppo = record(url, "policy", tmp / "ppo", config=None, metrics=None, name="ppo",
                 inputs=[Ref("snapshot", snapshot_id=snap), Ref("base_model", ref="tiny"),
                         Ref("reward_model", artifact_id=rm)])
    ev = record(url, "evaluation", tmp / "eval.json", config=None, metrics=None,
                inputs=[Ref("policy", artifact_id=ppo), Ref("reward_model", artifact_id=rm),
                        Ref("judge", ref="rules")])
    return {"rm": rm, "ppo": ppo, "eval": ev}


def test_tree_of_a_three_level_graph_expands_a_shared_ancestor_once(
        db_url: str, tmp_path: Path, make_snapshot: Any) -> None:
    snap = make_snapshot(db_url)
    ids = build_graph(db_url, tmp_path, snap)
    tree = lineage_tree(ids["eval"], db_url)
    assert tree["id"] == ids["eval"] and tree["kind"] == "evaluation"
    policy, reward, judge = tree["inputs"]
    assert (policy["role"], reward["role"], judge) == ("policy", "reward_model",
                                                       {"role": "judge", "ref": "rules"})
    ppo = policy["artifact"]
    assert [e["role"] for e in ppo["inputs"]] == ["snapshot", "base_model", "reward_model"]
    assert ppo["inputs"][0]["snapshot"] == {"id": snap, "name": "s1", "content_hash": "ab" * 32}
    rm = ppo["inputs"][2]["artifact"]  # first visit, depth-first: expanded here
    assert rm["id"] == ids["rm"] and rm["snapshot_hash"] == "ab" * 32
    assert rm["inputs"] == [{"role": "snapshot",
                             "snapshot": {"id": snap, "name": "s1", "content_hash": "ab" * 32}}]
    assert reward["artifact"] == {"id": ids["rm"], "kind": "reward_model", "name": "rm",
                                  "repeated": True}
    assert [a.id for a in ancestors(ids["eval"], db_url)] == [ids["eval"], ids["ppo"], ids["rm"]]


def test_depth_one_stops_after_the_direct_inputs(sqlite_url: str, tmp_path: Path,
                                                 make_snapshot: Any) -> None:
    ids = build_graph(sqlite_url, tmp_path, make_snapshot(sqlite_url))
    tree = lineage_tree(ids["eval"], sqlite_url, depth=1)
    assert [e["artifact"]["kind"] for e in tree["inputs"][:2]] == ["policy", "reward_model"]
    assert all("inputs" not in e.get("artifact", {}) for e in tree["inputs"])


def test_render_tree_draws_the_graph_and_refers_back_to_shared_ancestors(
        sqlite_url: str, tmp_path: Path, make_snapshot: Any) -> None:
    snap = make_snapshot(sqlite_url)
    ids = build_graph(sqlite_url, tmp_path, snap)
    code = code_version()
    assert render_tree(lineage_tree(ids["eval"], sqlite_url)) == [
        f"#{ids['eval']} evaluation code={code}",
        f"├─ policy: #{ids['ppo']} policy ppo code={code}",
        f"│  ├─ snapshot: snapshot {snap} s1 abababababab",
        "│  ├─ base_model: tiny",
        f"│  └─ reward_model: #{ids['rm']} reward_model rm data=abababababab code={code}",
        f"│     └─ snapshot: snapshot {snap} s1 abababababab",
        f"├─ reward_model: #{ids['rm']} reward_model rm (shown above)",
        "└─ judge: rules",
    ]


def test_a_cycle_written_into_the_tables_still_ends(sqlite_url: str, tmp_path: Path,
                                                    make_snapshot: Any) -> None:
    # record() cannot make a cycle (inputs must exist first); a hand edit can.
    ids = build_graph(sqlite_url, tmp_path, make_snapshot(sqlite_url))
    with session_scope(sqlite_url) as s:
        s.add(ArtifactInput(artifact_id=ids["rm"], role="evaluation",
                            input_artifact_id=ids["eval"], position=1))
    tree = lineage_tree(ids["eval"], sqlite_url)
    rm = tree["inputs"][0]["artifact"]["inputs"][2]["artifact"]
    assert rm["inputs"][1]["artifact"] == {"id": ids["eval"], "kind": "evaluation", "name": None,
                                           "repeated": True}
    assert len(ancestors(ids["rm"], sqlite_url)) == 3


def test_unknown_artifact_is_a_clear_error(sqlite_url: str, make_snapshot: Any) -> None:
    make_snapshot(sqlite_url)
    with pytest.raises(PreflineError, match="no artifact with id 42"):
        lineage_tree(42, sqlite_url)
