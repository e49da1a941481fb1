"""``prefline demo --quick``: every stage produces its output, and a re-run reuses them all."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from prefline.cli import main
from prefline.demo.cache import StageCache
from prefline.demo.pipeline import STAGES, demo_store
from prefline.demo.report import SUMMARY_KEYS
from prefline.registry import lineage_tree

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_demo_quick_runs_every_stage_then_reuses_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    main(["demo", "--quick", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    for key in SUMMARY_KEYS:
        assert key in summary, key
    # the headline is held out; the labelling judge and the proxy are rows named as such
    assert (summary["judge"], summary["judge_role"], summary["eval_split"]) == ("rubric", "held-out", "eval")
    assert [(r["judge"], r["role"]) for r in summary["matrix"]] == [
        ("rubric", "held-out"), ("rules", "labelling"), (summary["matrix"][2]["judge"], "proxy")]
    assert "Target NOT met: the policy did not show a held-out judge ('rubric')" in capsys.readouterr().err
    assert set(summary["stages_seconds"]) == set(STAGES)
    for stage in STAGES:
        manifest = json.loads((out / "stages" / f"{stage}.json").read_text())
        for rel in manifest["files"]:
            assert (out / rel).exists(), f"{stage} lost {rel}"
    # each stage's own output
    assert (out / "generate" / "candidates.jsonl").read_text().count("\n") == 14
    # the annotator labels its budget of the pairs, with the configured share flipped
    label = json.loads((out / "stages" / "label.json").read_text())["outputs"]
    assert label["pairs"] == label["budget"] == 30 < label["pairs_available"]
    assert label["flipped"] == round(0.15 * label["decisive"]) > 0
    assert len(json.loads((out / "label" / "flipped.json").read_text())) == label["flipped"]
    assert summary["annotator"]["flipped"] == label["flipped"]
    # the policy trains on the reward model's best-vs-worst pairs, not on the labels
    bon = (out / "bon" / "pairs.jsonl").read_text().splitlines()
    assert summary["policy_data"]["pairs"] == len(bon) > 0
    assert all(json.loads(r)["judge"].startswith("reward:") for r in bon)
    assert summary["feedback"] > 0 and len(summary["snapshot_hash"]) == 64
    assert (out / "audit" / "audit.html").exists()
    assert (out / "reward" / "model" / "model_card.json").exists()
    assert any((out / "dpo").rglob("adapter_config.json"))
    eval_json = json.loads((out / "evaluate" / "eval.json").read_text())
    assert eval_json["n_prompts"] == 7 and 0.0 <= summary["judge_win_rate"] <= 1.0
    lineage = json.loads((out / "register" / "lineage.json").read_text())
    assert [a["kind"] for a in lineage] == ["evaluation", "policy", "reward_model"]
    # A graph, not a chain: the policy was trained on the snapshot and the base model only;
    # the evaluation used the policy, the reference, the judge and the reward model.
    tree = lineage_tree(lineage[0]["id"], demo_store(out))
    roles = {edge["role"] for edge in tree["inputs"]}
    assert roles == {"policy", "reference_model", "judge", "reward_model"}
    policy = next(e for e in tree["inputs"] if e["role"] == "policy")
    assert {e["role"] for e in policy["artifact"]["inputs"]} == {"data", "base_model",
                                                                 "reward_model"}
    reward = next(e for e in policy["artifact"]["inputs"] if e["role"] == "reward_model")
    assert {e["role"] for e in reward["artifact"]["inputs"]} == {"snapshot", "base_model"}
    assert lineage[2]["snapshot_hash"] == summary["snapshot_hash"]
    # the over-optimisation curve: best-of-N (KL bound) and the DPO policy (measured KL)
    points = summary["overoptimisation"]["points"]
    assert [(p["policy"], p["kl_kind"]) for p in points] == [
        ("best-of-1", "bound"), ("best-of-2", "bound"), ("dpo", "measured")]
    assert points[0]["kl"] == 0.0 and points[1]["kl"] == pytest.approx(math.log(2) - 0.5)
    assert [r["role"] for r in points[1]["matrix"]] == ["held-out", "labelling", "proxy"]
    assert points[2]["matrix"] == summary["matrix"]
    html = (out / "report" / "index.html").read_text()
    assert "Quick mode" in html and summary["snapshot_hash"][:12] in html
    assert "over-optimisation" in html and "img/overopt.png" in html
    pngs = sorted((out / "report" / "img").glob("*.png"))
    assert len(pngs) >= 5 and all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs)
    assert not summary["target_met"]  # tiny random models must never claim a result

    main(["demo", "--quick", "--out", str(out)])
    again = json.loads((out / "summary.json").read_text())
    assert again["stages_reused"] == sorted(STAGES)
    assert again["judge_win_rate"] == summary["judge_win_rate"]

    # --reproduce reruns the recorded configuration (not the defaults) and prints what differs
    recorded = tmp_path / "recorded.json"
    recorded.write_text(json.dumps({**summary, "judge_win_rate": 0.123}))
    capsys.readouterr()
    main(["demo", "--reproduce", str(recorded), "--out", str(tmp_path / "again")])
    printed = capsys.readouterr().out
    rerun = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert rerun["config_hash"] == summary["config_hash"] and rerun["quick"]
    assert rerun["stages_reused"] == []  # a fresh folder: everything ran again
    assert f"figure  judge_win_rate: 0.1230 → {rerun['judge_win_rate']:.4f}" in printed
    assert "config_hash" not in printed and "seeds" not in printed


def test_a_changed_setting_reruns_only_downstream_stages(tmp_path: Path) -> None:
    cache, calls = StageCache(tmp_path), []

    def stage(name: str, value: int) -> tuple[dict[str, int], list[str]]:
        calls.append(name)
        return {"value": value}, []

    a = cache.run("a", {"x": 1}, lambda w: stage("a", 1))
    cache.run("b", {"dep": a.output_hash, "y": 1}, lambda w: stage("b", 2))
    assert calls == ["a", "b"]
    a = cache.run("a", {"x": 1}, lambda w: stage("a", 1))
    b = cache.run("b", {"dep": a.output_hash, "y": 2}, lambda w: stage("b", 3))
    assert a.reused and not b.reused and calls == ["a", "b", "b"]

