"""What a policy evaluation names and shows: its inputs as typed (with artifact ids where
registered) in the JSON and the HTML, a seeded side-by-side with wins, losses and ties,
progress per batch and per pair, and nothing half-written when interrupted."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from prefline.base import interrupts
from prefline.base.progress import Reporter
from prefline.evaluate import policy_judges
from prefline.evaluate.policy import compare, run
from prefline.evaluate.policy_config import PolicyEvalConfig
from prefline.evaluate.policy_report import write_policy_report
from prefline.evaluate.policy_result import examples
from prefline.generate.io import PromptRow
from prefline.judges.base import Verdict
from prefline.models.reward import RewardModel
from prefline.models.tiny import save_tiny, tiny_causal_lm
from prefline.registry import Ref, record
from prefline.store.context import Context, Store

ROWS = [PromptRow(str(i), [{"role": "user", "content": f"Question {i}?"}], "c" + str(i % 2))
        for i in range(8)]
CFG = PolicyEvalConfig(policy="a", baseline="b", judge="rules", n_samples=2, max_new_tokens=12,
                       batch_size=8, n_boot=100)


class LongerWins:
    """A judge that prefers the longer response (ties on equal length)."""

    name, both_orders = "longer", True

    def config(self) -> dict[str, Any]:
        return {"judge": "longer"}

    def judge(self, prompt: Any, a: str, b: str) -> Verdict:
        return Verdict("a" if len(a) > len(b) else "b" if len(b) > len(a) else "tie", 1.0, "")

    def rate(self, prompt: Any, response: str) -> dict[str, float]:
        return {}


def test_the_sample_draws_wins_losses_and_ties_in_turn_seeded() -> None:
    # Mostly ties, in the first prompts: the old "first prompts" rule showed only ties.
    scores = [[0.5, 0.5]] * 6 + [[1.0, 0.5], [0.0, 0.5]]
    resp = [[f"r{i}{j}" for j in range(2)] for i in range(8)]
    picked = examples(ROWS, resp, resp, scores, seed=3, k=4)
    assert [ex["outcome"] for ex in picked] == ["policy wins", "baseline wins", "tie", "tie"]
    assert (picked[0]["id"], picked[0]["sample"]) == ("6", 0)
    assert picked == examples(ROWS, resp, resp, scores, seed=3, k=4)  # seeded
    tie_ids = {ex["id"] for seed in range(20)
               for ex in examples(ROWS, resp, resp, scores, seed=seed, k=4)
               if ex["outcome"] == "tie"}
    assert len(tie_ids) > 2  # ties are drawn at random, not the first ones
    assert len(examples(ROWS, resp, resp, [[0.5, 0.5]] * 8, k=6)) == 6


def test_compare_reports_progress_per_batch_and_pair_and_shows_decided_pairs(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("PREFLINE_PROGRESS_SECONDS", "0")
    res = compare(tiny_causal_lm(seed=1), tiny_causal_lm(seed=2), ROWS, LongerWins(), CFG,
                  progress=Reporter())
    err = capsys.readouterr().err.splitlines()
    counts = {name: [m[1] for ln in err if (m := re.match(rf"{re.escape(name)} (\d+/\d+) ", ln))]
              for name in ("sample policy", "sample baseline", "kl", "judge (rules)")}
    # 4 prompts per sampling batch (8 sequences, 2 per prompt), 8 completions per KL batch
    # and model, one line per judged pair.
    assert counts["sample policy"] == ["4/8", "8/8"]
    assert counts["sample baseline"] == ["4/8", "8/8"]
    assert counts["kl"] == ["1/4", "2/4", "3/4", "4/4"]
    assert counts["judge (rules)"] == [f"{k}/16" for k in range(1, 17)]
    shown = {ex["outcome"] for ex in res.examples}
    assert {"policy wins", "baseline wins"} <= shown
    text = write_policy_report(res.to_json(), tmp_path / "r.html").read_text()
    assert "(policy wins)" in text and "(baseline wins)" in text


def test_json_and_html_name_every_input_with_artifact_ids(
        tmp_path: Path, sqlite_url: str, tiny_causal_dir: Path, tiny_encoder_dir: Path) -> None:
    store = Store.open(sqlite_url)
    policy_id = record(store, "policy", tiny_causal_dir, config=None, metrics=None,
                       inputs=[Ref("base_model", ref="tiny")])
    rm_dir = RewardModel.create(str(tiny_encoder_dir), max_length=64).save(tmp_path / "rm")
    rm_id = record(store, "reward_model", rm_dir, config=None, metrics=None,
                   inputs=[Ref("base_model", ref="tiny-encoder")])
    baseline = save_tiny("causal", tmp_path / "base", seed=1)  # a folder, not registered
    prompts = tmp_path / "p.txt"
    prompts.write_text("Say hi.\nWhat is 3 times 4?\n")
    cfg = PolicyEvalConfig(policy=str(tiny_causal_dir), baseline=str(baseline),
                           reward=f"artifact:{rm_id}", prompts=str(prompts), max_new_tokens=6,
                           n_boot=100, report=tmp_path / "eval.html")
    res = run(cfg, Context(store=store, run_dir=tmp_path / "run", progress=Reporter(False)))
    named = json.loads((tmp_path / "run" / "eval.json").read_text())["named_inputs"]
    assert named["policy"] == {"spec": str(tiny_causal_dir), "artifact_id": policy_id,
                               "path": str(tiny_causal_dir), "content_hash": None}
    assert named["baseline"]["artifact_id"] is None and named["baseline"]["path"] == str(baseline)
    assert named["judge"]["spec"] == "rules" and res.to_json()["judge"]["spec"] == "rules"
    assert named["reward_model"]["spec"] == f"artifact:{rm_id}"
    assert named["reward_model"]["artifact_id"] == rm_id
    assert named["prompts"]["spec"] == str(prompts) and len(named["prompts"]["content_hash"]) == 64
    assert res.inputs[0] == Ref("policy", artifact_id=policy_id)  # linked by its folder
    html = (tmp_path / "eval.html").read_text()
    title = f"<title>Policy evaluation: {tiny_causal_dir} vs {baseline}</title>"
    assert title in html
    for text in (f"#{policy_id}", f"#{rm_id}", f"artifact:{rm_id}", "<code>rules</code>",
                 str(prompts), named["prompts"]["content_hash"], "not registered"):
        assert text in html, text


def test_an_interrupted_evaluation_writes_nothing(
        tmp_path: Path, tiny_causal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Interrupted(LongerWins):
        def judge(self, prompt: Any, a: str, b: str) -> Verdict:
            raise KeyboardInterrupt

    monkeypatch.setattr(policy_judges, "make_judge", lambda spec: Interrupted())
    cfg = PolicyEvalConfig(policy=str(tiny_causal_dir), baseline=str(tiny_causal_dir),
                           prompts="bundled:eval", max_new_tokens=4, n_boot=100,
                           report=tmp_path / "eval.html")
    interrupts.forget()
    with pytest.raises(KeyboardInterrupt):
        run(cfg, Context(run_dir=tmp_path / "run", progress=Reporter(False)))
    assert not (tmp_path / "eval.html").exists() and not (tmp_path / "run").exists()
    kept = interrupts.kept()
    assert kept is not None and kept.resume_flag is None
    assert kept.what.startswith("before the evaluation finished; nothing was written")
