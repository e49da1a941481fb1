"""Fixtures for rollout: a store with registered policies, evaluations and gate files."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.collect.conftest import PASSWORD

from prefline.collect.auth import create_api_key, create_user
from prefline.registry import Ref, record
from prefline.rollout import actions, gates
from prefline.store.db import open_store, session_scope

GATES = """rules = [
  "judge_win_rate.ci_low >= 0.5",
  "kl <= 8",
  "length_ratio <= 1.3",
  "refusal.should_refuse >= baseline - 0.02",
]
"""


@dataclass
class Registry:
    url: str
    policies: list[int]
    evals: list[int]
    gates: Path


def eval_doc(win: float, ci_low: float, kl: float, refuse: float) -> dict[str, object]:
    """A policy evaluation as ``eval policy`` writes it (the parts gates read)."""
    side = {"mean_length_words": 10.0, "distinct_1": 0.5, "distinct_2": 0.7,
            "refusal_rate": {"should_refuse": refuse, "should_not_refuse": 0.0, "all": 0.1}}
    return {"metrics": {"judge": "rules", "judge_win_rate": win,
                        "judge_win_rate_ci": [ci_low, win + 0.1], "kl": kl},
            "policy": side, "baseline": {**side, "refusal_rate": {"should_refuse": 0.8}}}


def register_policy(url: str, model_dir: Path, dest: Path, name: str,
                    doc: dict[str, object]) -> tuple[int, int]:
    """Copy a model folder, register it as a policy and an evaluation of it."""
    shutil.copytree(model_dir, dest)
    pid = record(url, "policy", dest, config={}, metrics={}, inputs=[], name=name)
    eval_file = dest.parent / f"{name}-eval.json"
    eval_file.write_text(json.dumps(doc))
    eid = record(url, "evaluation", eval_file, config={}, metrics=doc["metrics"],  # type: ignore[arg-type]
                 inputs=[Ref("policy", artifact_id=pid)], name=f"{name}-eval")
    return pid, eid


def make_registry(url: str, tiny_causal_dir: Path, tmp: Path) -> Registry:
    open_store(url)
    good = eval_doc(0.7, 0.6, 3.0, 0.8)
    bad = eval_doc(0.45, 0.3, 12.0, 0.5)
    p1, e1 = register_policy(url, tiny_causal_dir, tmp / "p1", "prod", good)
    p2, e2 = register_policy(url, tiny_causal_dir, tmp / "p2", "cand", good)
    p3, e3 = register_policy(url, tiny_causal_dir, tmp / "p3", "bad", bad)
    gates = tmp / "gates.toml"
    gates.write_text(GATES)
    return Registry(url, [p1, p2, p3], [e1, e2, e3], gates)


@pytest.fixture
def registry(db_url: str, tiny_causal_dir: Path, tmp_path: Path) -> Registry:
    return make_registry(db_url, tiny_causal_dir, tmp_path)


@pytest.fixture
def sqlite_registry(sqlite_url: str, tiny_causal_dir: Path, tmp_path: Path) -> Registry:
    return make_registry(sqlite_url, tiny_causal_dir, tmp_path)


@dataclass
class Canary:
    reg: Registry
    key: str
    prod: int
    cand: int


def start_canary(reg: Registry, percent: float = 50.0, flag: str = "chat",
                 guardrails: dict[str, object] | None = None, users: bool = False) -> Canary:
    """An API key (and with ``users``, alice the annotator and root the admin); policy 1 in
    production and policy 2 as a ``percent`` % canary of ``flag`` (both gated first)."""
    with session_scope(reg.url) as s:
        key = create_api_key(s, "prod", rate_per_s=1e6, burst=10**6)
        for name, role in (("alice", "annotator"), ("root", "admin")) if users else ():
            create_user(s, name, PASSWORD, role=role)
    prod, cand = reg.policies[0], reg.policies[1]
    for pid, eid in ((prod, reg.evals[0]), (cand, reg.evals[1])):
        assert gates.check(reg.url, reg.gates, [eid], actor="test").passed
        actions.promote(reg.url, pid, actor="test", reason="gated")
    actions.promote(reg.url, prod, actor="test", reason="first", to="production", flag=flag)
    actions.promote(reg.url, cand, actor="test", reason="canary", flag=flag, percent=percent)
    if guardrails is not None:
        actions.set_traffic(reg.url, flag, actor="test", reason="test", guardrails=guardrails)
    return Canary(reg, key, prod, cand)
