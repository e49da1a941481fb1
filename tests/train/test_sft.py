"""SFT: the loss is the response tokens' NLL (prompt masked, worked by hand), it falls on
best-of-N demonstrations (rejection sampling), and the result registers with its lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from policy_fixtures import FAST, context

from prefline.base.errors import PreflineError
from prefline.formats.examples import UnpairedExample, as_messages
from prefline.models.tiny import tiny_causal_lm
from prefline.registry import record_result
from prefline.registry.lineage import inputs_of
from prefline.train.logprobs import SequenceLogps
from prefline.train.policy_batch import encode_unpaired
from prefline.train.sft import SFTConfig, SFTTask, demonstrations, run
from prefline.train.train_config import TrainConfig


def test_loss_is_response_nll_with_the_prompt_masked() -> None:
    """For prompt p and response r the loss is -Σ_t log π(r_t | p, r_<t) over r's bytes and
    the end-of-turn token only; the count is those tokens (2 bytes + EOS = 3)."""
    lm, tok = tiny_causal_lm(seed=0)
    items, _ = encode_unpaired([UnpairedExample(as_messages("hi"), "ok", True)], tok, 64)
    task = SFTTask(pad_id=tok.pad_token_id)
    batch = task.collate(items)
    loss, count, _ = task.loss(SequenceLogps(lm), batch)
    prompt = list(items[0].prompt)
    response = list(tok("ok", add_special_tokens=False).input_ids) + [tok.eos_token_id]
    assert list(items[0].completion) == response and count == task.count(batch) == 3
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logp = torch.log_softmax(lm(ids).logits.float()[0], -1)
    n = len(prompt)
    by_hand = -sum(float(logp[n - 1 + t, response[t]]) for t in range(3))
    whole = -sum(float(logp[t - 1, int(ids[0, t])]) for t in range(1, ids.shape[1]))
    assert float(loss.detach()) == pytest.approx(by_hand, rel=1e-5)
    assert abs(whole - by_hand) > 1.0  # the prompt's tokens would have counted a lot


def test_demonstrations_keep_undefeated_approved_responses() -> None:
    p = as_messages("q")
    ex = [UnpairedExample(p, "best", True), UnpairedExample(p, "mid", False),   # best > mid
          UnpairedExample(p, "mid", True), UnpairedExample(p, "low", False),    # mid > low
          UnpairedExample(p, "best", True), UnpairedExample(as_messages("r"), "x", True)]
    assert [(e.prompt[0]["content"], e.completion) for e in demonstrations(ex)] == [
        ("q", "best"), ("r", "x")]


def _best_of_n_file(path: Path, n: int = 24) -> Path:
    rows = [{"prompt": [{"role": "user", "content": f"item {i}"}],
             "responses": ["no", "Sure: the answer is yes.", "meh"], "scores": [0.1, 0.9, 0.2],
             "best": 1, "best_response": "Sure: the answer is yes.", "scorer": "rules"}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sft_on_best_of_n_file_lowers_nll_and_registers(tmp_path: Path, tiny_causal_dir: Path,
                                                        sqlite_url: str) -> None:
    data = _best_of_n_file(tmp_path / "best.jsonl")
    cfg = SFTConfig(data=str(data), model=str(tiny_causal_dir), val_fraction=0.2,
                    test_fraction=0.2, train=TrainConfig(**{**FAST, "max_steps": 12,
                                                            "lr": 5e-3}))
    ctx = context(tmp_path / "run", sqlite_url)
    result = run(cfg, ctx)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 12 and losses[-1] < 0.7 * losses[0]
    for split in ("val", "heldout"):
        m = result.metrics[split]
        assert m["nll"] < 0.7 * m["nll_before"]
    assert result.counts["train"] + result.counts["val"] + result.counts["heldout"] == 24
    assert (result.path / "config.json").exists()
    art = record_result(ctx.store, result, cfg, name="sft")
    roles = {r.role: r for r in inputs_of(art, ctx.store)}
    assert set(roles) == {"data", "base_model"} and roles["base_model"].ref == str(tiny_causal_dir)


def test_sft_refuses_data_without_demonstrations(tmp_path: Path) -> None:
    bad = tmp_path / "thumbs.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "completion": "bad", "label": False}) + "\n")
    with pytest.raises(PreflineError, match="no demonstrations"):
        run(SFTConfig(data=str(bad), test_fraction=0.0, val_fraction=0.0),
            context(tmp_path / "run"))
