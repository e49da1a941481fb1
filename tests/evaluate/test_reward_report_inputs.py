"""The reward evaluation's JSON and HTML name what was evaluated on what: the reward model
(with its artifact id) and the data as typed (snapshot id and content hash, or the file)."""

from __future__ import annotations

import json
from pathlib import Path

from prefline.base.progress import Reporter
from prefline.evaluate.reward import RESULT_FILE, RewardEvalConfig, run
from prefline.models.reward import RewardModel
from prefline.registry import Ref, record
from prefline.store.context import Context, Store
from prefline.store.ingest import import_file
from prefline.store.snapshots import create_snapshot


def test_report_and_json_name_the_model_and_the_data(tiny_encoder_dir: Path, tmp_path: Path,
                                                      sqlite_url: str) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"question {i}?", "chosen": "a helpful reply",
                                        "rejected": "short"}) + "\n" for i in range(20)))
    import_file(data, sqlite_url)
    snap = create_snapshot(sqlite_url, "v1", test_fraction=0.4)
    model = RewardModel.create(str(tiny_encoder_dir), max_length=64).save(tmp_path / "rm")
    rm_id = record(sqlite_url, "reward_model", model, config=None, metrics=None,
                   inputs=[Ref("snapshot", snapshot_id=snap.id)])
    ctx = Context(store=Store.open(sqlite_url), run_dir=tmp_path / "ev", progress=Reporter(False))
    run(RewardEvalConfig(model=str(model), snapshot="v1", probes=0,
                         report=str(tmp_path / "r.html")), ctx)
    out = json.loads((tmp_path / "ev" / RESULT_FILE).read_text())
    assert out["data"] == "v1" and out["model"] == str(model)
    assert out["inputs"][0]["artifact_id"] == rm_id and out["inputs"][1]["snapshot_id"] == snap.id
    html = (tmp_path / "r.html").read_text()
    for text in ("<h2>Inputs</h2>", str(model), f"#{rm_id}", "<td>v1</td>", f"#{snap.id}",
                 snap.content_hash, "<td>test</td>"):
        assert text in html, text

    run(RewardEvalConfig(model=str(model), data=str(data), probes=0,
                         report=str(tmp_path / "f.html")), ctx)
    html = (tmp_path / "f.html").read_text()
    assert str(data) in html and "none (a file)" in html and f"#{rm_id}" in html
