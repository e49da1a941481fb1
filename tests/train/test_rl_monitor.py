"""The over-optimisation monitor in online RL (train grpo|rloo|ppo): measurements in
``monitor.jsonl`` and in the training log, the gold/proxy-vs-KL plot, and the early stop on
a KL budget, which ends the run right after the step that passed it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_rl import context, toy_prompts, toy_reward, toy_train  # noqa: E402

from prefline.base.errors import PreflineError
from prefline.data import load_prompts
from prefline.models.tiny import tiny_causal_lm
from prefline.train.ppo import fit_ppo
from prefline.train.rl import fit_rl
from prefline.train.rl_config import GRPOConfig, MonitorConfig, PPOConfig, RolloutConfig
from prefline.train.rl_task import monitor_rows

GOLD_FN = """
def gold(prompt, response):
    return sum("a" <= ch <= "z" for ch in response) / len(response) if response else 0.0
"""


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_grpo_monitor_writes_jsonl_and_plot_with_gold(tmp_path: Path) -> None:
    """Every 2 steps (and at step 0) on the fixed prompts: proxy, KL, length, distinct-n and
    the gold score; the engine logs each measurement; the plot is drawn."""
    prompts = str(toy_prompts(tmp_path / "p.jsonl"))
    (tmp_path / "gold.py").write_text(GOLD_FN)
    gold = f"python:{tmp_path / 'gold.py'}:gold"
    cfg = GRPOConfig(reward=toy_reward(), train=toy_train(4),
                     rollout=RolloutConfig(prompts=prompts, k=4, max_new_tokens=4),
                     monitor=MonitorConfig(monitor_every=2, monitor_prompts=prompts,
                                           monitor_limit=4, gold=gold))
    lm, tok = tiny_causal_lm(seed=0)
    res = fit_rl(cfg, context(tmp_path / "run"), lm, tok, base_model="tiny")
    recs = _lines(tmp_path / "run" / "monitor.jsonl")
    assert [r["step"] for r in recs] == [0, 2, 4] and res.steps == 4
    assert recs[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy is its reference
    assert recs[-1]["kl"] > 0 and all(r["samples"] == 4 for r in recs)
    for key in ("proxy", "length", "distinct_1", "distinct_2", "gold"):
        assert all(isinstance(r[key], float) for r in recs), key
    # gold here scores as the proxy does (lowercase share): equal means
    assert all(r["gold"] == pytest.approx(r["proxy"]) for r in recs)
    evals = [r for r in _lines(tmp_path / "run" / "train_log.jsonl") if "eval" in r]
    assert [e["step"] for e in evals] == [2, 4] and "kl" in evals[0]["eval"]
    assert res.plot is not None and res.plot.read_bytes()[:4] == b"\x89PNG"
    assert res.stop_reason is None and res.monitor == recs
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["monitor"] == recs


def test_ppo_stops_early_on_a_tiny_kl_budget(tmp_path: Path) -> None:
    """A KL budget the first update passes: the run ends after step 1 of 10."""
    prompts = str(toy_prompts(tmp_path / "p.jsonl"))
    cfg = PPOConfig(reward=toy_reward(), train=toy_train(10),
                    rollout=RolloutConfig(prompts=prompts, k=2, max_new_tokens=4),
                    monitor=MonitorConfig(monitor_every=1, monitor_prompts=prompts,
                                          monitor_limit=4, kl_budget=1e-4))
    lm, tok = tiny_causal_lm(seed=0)
    res = fit_ppo(cfg, context(tmp_path / "run"), lm, tok, base_model="tiny")
    recs = _lines(tmp_path / "run" / "monitor.jsonl")
    assert res.steps == 1 and len(res.history) == 1
    assert [r["step"] for r in recs] == [0, 1] and recs[1]["kl"] > 1e-4
    assert res.stop_reason is not None and "budget" in res.stop_reason
    assert (res.path / "config.json").exists()


def test_monitor_settings_are_checked() -> None:
    with pytest.raises(PreflineError, match="kl_budget"):
        MonitorConfig(kl_budget=0.0)
    with pytest.raises(PreflineError, match="monitor_every"):
        MonitorConfig(monitor_every=-1)
    with pytest.raises(PreflineError) as err:
        MonitorConfig(gold="python:nocolon")
    assert err.value.field == "gold"


def test_resumed_monitor_equals_uninterrupted(tmp_path: Path) -> None:
    """A run cut after step 2 and resumed to 4 has the uninterrupted run's measurements."""
    prompts = str(toy_prompts(tmp_path / "p.jsonl"))

    def go(run: str, steps: int, resume: bool) -> list[dict[str, object]]:
        cfg = GRPOConfig(reward=toy_reward(), train=toy_train(steps, resume=resume),
                         rollout=RolloutConfig(prompts=prompts, k=2, max_new_tokens=3),
                         monitor=MonitorConfig(monitor_every=1, monitor_prompts=prompts,
                                               monitor_limit=2))
        lm, tok = tiny_causal_lm(seed=0)
        fit_rl(cfg, context(tmp_path / run), lm, tok, base_model="tiny")
        return _lines(tmp_path / run / "monitor.jsonl")

    full = go("full", 4, False)
    go("cut", 2, False)
    resumed = go("cut", 4, True)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]
    keys = ("step", "proxy", "kl", "length", "distinct_1", "distinct_2", "samples")
    for a, b in zip(resumed, full, strict=True):
        assert [a[k] for k in keys] == pytest.approx([b[k] for k in keys], rel=1e-5, abs=1e-6)


def test_monitor_on_the_bundled_prompts_watches_dev_never_eval(tmp_path: Path) -> None:
    """Training on the bundled prompts, the monitor's default set is the dev split: the eval
    split is scored once per released configuration, so no run may watch (or stop on) it."""
    cfg = GRPOConfig(reward=toy_reward(), train=toy_train(1))
    texts = [r["prompt"] for r in monitor_rows(cfg, [])]
    assert texts == [r["prompt"] for r in load_prompts("dev")]
    assert not set(texts) & {r["prompt"] for r in load_prompts("eval")}
    # own prompts: the training prompts, unless monitor_prompts names a set
    own = GRPOConfig(reward=toy_reward(), train=toy_train(1),
                     rollout=RolloutConfig(prompts=str(toy_prompts(tmp_path / "p.jsonl"))))
    assert monitor_rows(own, [{"prompt": "x"}]) == [{"prompt": "x"}]
