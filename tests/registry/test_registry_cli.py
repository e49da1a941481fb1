"""``prefline registry list|show [--tree] [--json]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefline.registry import Ref, record


def test_show_tree_prints_the_whole_graph_once(sqlite_url: str, tmp_path: Path, cli: Any,
                                               make_snapshot: Any) -> None:
    snap = make_snapshot(sqlite_url)
    rm = record(sqlite_url, "reward_model", tmp_path / "rm", config=None, metrics=None,
                name="rm", inputs=[Ref("snapshot", snapshot_id=snap)])
    pol = record(sqlite_url, "policy", tmp_path / "pol", config=None, metrics=None,
                 inputs=[Ref("snapshot", snapshot_id=snap), Ref("base_model", ref="/m/tiny"),
                         Ref("reward_model", artifact_id=rm)])
    ev = record(sqlite_url, "evaluation", tmp_path / "e.json", config=None, metrics={"kl": 1.0},
                inputs=[Ref("policy", artifact_id=pol), Ref("reward_model", artifact_id=rm),
                        Ref("judge", ref="rules")])
    code, out, _ = cli("registry", "show", str(ev), "--tree", "--db", sqlite_url)
    assert code == 0
    lines = out.splitlines()
    start = lines.index("      lineage:")
    tree = [line.split(" code=")[0] for line in lines[start + 1:]]
    assert tree == [
        f"  #{ev} evaluation",
        f"  ├─ policy: #{pol} policy",
        f"  │  ├─ snapshot: snapshot {snap} s1 abababababab",
        "  │  ├─ base_model: /m/tiny",
        f"  │  └─ reward_model: #{rm} reward_model rm",
        f"  │     └─ snapshot: snapshot {snap} s1 abababababab",
        f"  ├─ reward_model: #{rm} reward_model rm (shown above)",
        "  └─ judge: rules",
    ]
    code, out, _ = cli("registry", "show", str(ev), "--db", sqlite_url)  # direct inputs only
    assert code == 0 and "lineage:" not in out and "    judge: rules" in out
    assert f"    policy: #{pol} policy" in out and "snapshot:" not in out
    code, out, _ = cli("registry", "show", str(ev), "--tree", "--json", "--db", sqlite_url)
    info = json.loads(out)
    assert info["metrics"] == {"kl": 1.0} and [e["role"] for e in info["inputs"]] == [
        "policy", "reward_model", "judge"]
    assert info["tree"]["inputs"][0]["artifact"]["inputs"][2]["artifact"]["id"] == rm
    code, out, _ = cli("registry", "list", "--db", sqlite_url)
    assert code == 0
    assert f"[snapshot=s{snap} base_model=tiny reward_model=#{rm}]" in out
    assert f"[policy=#{pol} reward_model=#{rm} judge=rules]" in out


def test_show_unknown_id_exits_2_with_one_sentence(sqlite_url: str, cli: Any,
                                                   make_snapshot: Any) -> None:
    make_snapshot(sqlite_url)
    code, out, err = cli("registry", "show", "404", "--tree", "--db", sqlite_url)
    assert code == 2 and out == "" and "no artifact with id 404" in err
