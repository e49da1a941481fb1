"""Personalised policies (issue 14 items 3 and 4, the policy half): per-segment LoRA adapters
trained with DPO, the global fallback, the manifest and registration, and serving by segment.

The disagreement test follows the real pipeline on a tiny model: a reference policy (the
tiny random model taught by SFT to answer with 1-24 words, so that length is something it
decides), candidates sampled from it, labelled by the disagreement builder's two opposite
rules judges (prefline.personal.disagree: style=concise prefers short, style=detailed
long), then ``prefline train personal-dpo``. Each segment's policy, sampled with a fixed
seed, must move mean answer length the opposite way from the other's relative to the
reference. The DPO loss carries RPO's NLL term on the chosen answer (rpo_alpha): on a
100k-parameter model plain DPO lowers both responses' log-probabilities and the freed mass
goes to byte noise of any length; the NLL term keeps the policy on answers it can produce.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from policy_fixtures import context, write_jsonl
from sqlalchemy import select
from tests.rollout.conftest import GATES, eval_doc
from typer.testing import CliRunner

from prefline.base.errors import PreflineError
from prefline.cli import app
from prefline.collect import create_app
from prefline.collect.auth import create_api_key
from prefline.formats.examples import PreferencePair, RankingExample, as_messages
from prefline.generate.io import generation_record
from prefline.generate.sampling import generate
from prefline.generate.store import Generation
from prefline.models.hub import load_causal_lm
from prefline.personal.disagree import DisagreeConfig
from prefline.personal.disagree import run as build_disagreement
from prefline.registry import Ref, record
from prefline.registry.lineage import inputs_of
from prefline.rollout import actions, gates
from prefline.store.db import session_scope
from prefline.store.models import Artifact, Response
from prefline.train.personal_config import PersonalDPOConfig
from prefline.train.personal_dpo import partition
from prefline.train.personal_manifest import read_manifest, route, segment_value
from prefline.train.policy_config import DPOConfig
from prefline.train.policy_data import FeedbackUse, PolicyData
from prefline.train.policy_data import select as policy_select
from prefline.train.sft import run as sft_run
from prefline.train.sft_config import SFTConfig
from prefline.train.train_config import TrainConfig

WORDS = ("la", "lo")
PROMPTS = [f"question {i} about the {w}" for i, w in
           enumerate(["river", "stone", "cloud", "lamp", "paper", "orbit", "seed", "road"] * 5)]
LENGTH_PROMPTS = [as_messages(f"tell me about the {w}") for w in ("sea", "hill", "moon", "tree")]


@dataclass
class Trained:
    url: str
    reference: Path
    folder: Path
    artifact: int
    out: dict[str, Any]


def _answer(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 24))) + "."


def _reference(tmp: Path, tiny: Path) -> Path:
    """The tiny model after SFT on answers of 1-24 words: a policy whose length varies."""
    rng = random.Random(0)
    rows = [{"prompt": f"tell me about {i}", "completion": _answer(rng), "label": True}
            for i in range(64)]
    cfg = SFTConfig(data=str(write_jsonl(tmp / "sft.jsonl", rows)), model=str(tiny),
                    val_fraction=0.0, test_fraction=0.0,
                    train=TrainConfig(lr=3e-3, batch_size=8, max_steps=150, precision="fp32",
                                      warmup_ratio=0.0))
    return Path(sft_run(cfg, context(tmp / "sft")).path)


def _disagreement(tmp: Path, reference: Path) -> Path:
    """Candidates sampled from the reference, labelled by the two opposite judges; plus a
    small segment (below min_pairs: falls back), a tiny one (below k: not named) and pairs
    with no segment (global only)."""
    lm, tok = load_causal_lm(reference)
    prompts = [as_messages(p) for p in PROMPTS]
    samples = generate(lm, tok, prompts, n=4, max_new_tokens=96, temperature=1.0, top_p=1.0,
                       seed=1, threads=1)
    gens = tmp / "candidates.jsonl"
    write_jsonl(gens, [generation_record(Generation(p, s)) for p, s in zip(prompts, samples,
                                                                             strict=True)])
    built = build_disagreement(DisagreeConfig(out=tmp / "set", generations=str(gens),
                                              n_prompts=len(PROMPTS), min_word_gap=8,
                                              heldout_fraction=0.2), context(tmp / "dis"))
    rows = [json.loads(line) for line in (tmp / "set" / "train.jsonl").read_text().splitlines()]
    extra = [({"style": "formal"}, 6), ({"style": "rare"}, 2), (None, 3)]
    for segment, n in extra:
        rows += [{"prompt": f"{segment} extra {i}", "chosen": "la.", "rejected": "lo lo lo lo.",
                  **({"segment": segment} if segment else {})} for i in range(n)]
    assert min(built.counts["train"].values()) >= 20
    return write_jsonl(tmp / "train.jsonl", rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_causal_dir: Path) -> Trained:
    tmp = tmp_path_factory.mktemp("personal")
    url = f"sqlite:///{tmp / 'store.db'}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # set up before conftest's per-test single thread applies
    try:
        return _train(tmp, url, tiny_causal_dir)
    finally:
        torch.set_num_threads(threads)


def _train(tmp: Path, url: str, tiny_causal_dir: Path) -> Trained:
    reference = _reference(tmp, tiny_causal_dir)
    data = _disagreement(tmp, reference)
    args = ["train", "personal-dpo", "--data", str(data), "--model", str(reference),
            "--segment-key", "style", "--min-pairs", "20", "--beta", "0.5", "--rpo-alpha", "1",
            "--lora-r", "8", "--lora-alpha", "16", "--val-fraction", "0", "--test-fraction", "0",
            "--lr", "5e-3", "--batch-size", "8", "--max-steps", "30", "--precision", "fp32",
            "--warmup-ratio", "0", "--db", url, "--out", str(tmp / "personal"), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    return Trained(url, reference, Path(out["path"]), int(out["artifact_id"]), out)


def _mean_length(path: Path) -> float:
    """Mean characters of 32 answers sampled with a fixed seed (temperature 1)."""
    lm, tok = load_causal_lm(path)
    outs = generate(lm, tok, LENGTH_PROMPTS, n=8, max_new_tokens=96, temperature=1.0,
                    top_p=1.0, seed=0, threads=1)
    lengths = [len(text) for texts in outs for text in texts]
    return sum(lengths) / len(lengths)


def test_segments_move_answer_length_in_opposite_directions(trained: Trained) -> None:
    manifest = read_manifest(trained.folder)
    ref = _mean_length(trained.reference)
    concise = _mean_length(trained.folder / manifest["segments"]["concise"]["adapter"])
    detailed = _mean_length(trained.folder / manifest["segments"]["detailed"]["adapter"])
    assert concise < 0.8 * ref, (concise, ref, detailed)
    assert detailed > 1.25 * ref, (concise, ref, detailed)


def test_manifest_fallback_k_anonymity_and_registration(trained: Trained) -> None:
    m = read_manifest(trained.folder)
    assert m["segment_key"] == "style" and m["min_pairs"] == 20
    assert set(m["segments"]) == {"concise", "detailed", "formal"}  # "rare" (2 < k=5) unnamed
    assert m["suppressed"] == 1 and m["without_key"] == 3
    formal = m["segments"]["formal"]
    assert formal["adapter"] is None and formal["pairs"] == 6
    assert "< min_pairs 20" in formal["fallback"]
    for value in ("concise", "detailed"):
        seg = m["segments"][value]
        assert seg["pairs"] >= 20 and (trained.folder / seg["adapter"] / "adapter_config.json").exists()
        assert trained.out["metrics"]["segments"][value]["pairs"] == seg["pairs"]
    total = sum(s["pairs"] for s in m["segments"].values()) + 2 + 3
    assert m["global"]["pairs"] == total and (trained.folder / m["global"]["adapter"]).is_dir()
    with session_scope(trained.url) as s:
        art = s.get(Artifact, trained.artifact)
        assert art is not None and art.kind == "policy" and Path(art.path) == trained.folder
    refs = inputs_of(trained.artifact, trained.url)
    assert [r.role for r in refs] == ["data", "base_model"]
    assert refs[1].ref == str(trained.reference)
    assert "rare" not in json.dumps(trained.out)  # the suppressed segment is named nowhere


def test_routing_rule() -> None:
    m = {"segment_key": "style", "global": {"adapter": "global/adapter"},
         "segments": {"concise": {"adapter": "segments/concise/adapter"},
                      "formal": {"adapter": None, "fallback": "too few"}}}
    assert route(m, "concise") == "style=concise"
    assert route(m, "region=eu, style=concise") == "style=concise"
    assert route(m, None, {"style": "concise"}) == "style=concise"
    assert route(m, "formal") == route(m, "unknown") == route(m, None) == "global"
    assert route(m, "region=eu") == "global" and segment_value("region=eu", "style") is None


def test_partition_keeps_each_split_and_a_rankings_segment() -> None:
    concise = {"style": "concise"}
    pairs = [PreferencePair(as_messages(f"q{i}"), "a", "bb", prompt_key=f"p{i}",
                            segment=concise) for i in range(3)]
    plain = PreferencePair(as_messages("q"), "a", "bb", prompt_key="q")
    ranking = RankingExample(as_messages("r"), ("x", "yy", "zzz"), prompt_key="r",
                             segment={"style": "detailed", "region": "eu"})
    train, _ = policy_select([*pairs[:2], plain, ranking], kto=False)
    data = PolicyData(train, [], [pairs[2]], FeedbackUse(), Ref("data", ref="f"), "h")
    parts = partition(data, "style")
    assert set(parts) == {"concise", "detailed"}
    assert len(parts["concise"].train) == 2 and parts["concise"].heldout == [pairs[2]]
    assert len(parts["detailed"].train) == 3  # the ranking's 3 implied pairs keep its segment
    assert parts["concise"].use.used == {"pairs": 2}
    assert parts["concise"].source_hash != parts["detailed"].source_hash != "h"


def test_config_refuses_what_cannot_be_personalised() -> None:
    with pytest.raises(PreflineError, match="lora"):
        PersonalDPOConfig(dpo=DPOConfig())
    with pytest.raises(PreflineError, match="min_group_size"):
        PersonalDPOConfig(min_pairs=3, min_group_size=5)
    with pytest.raises(PreflineError, match="kto"):
        PersonalDPOConfig(dpo=DPOConfig(lora=True, loss="kto"))


@pytest.fixture
def served(trained: Trained, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    """The personal policy gated and in production as flag ``chat``; an API key."""
    doc = eval_doc(0.7, 0.6, 3.0, 0.8)
    (tmp_path / "eval.json").write_text(json.dumps(doc))
    (tmp_path / "gates.toml").write_text(GATES)
    eid = record(trained.url, "evaluation", tmp_path / "eval.json", config={},
                 metrics=doc["metrics"], inputs=[Ref("policy", artifact_id=trained.artifact)])  # type: ignore[arg-type]
    assert gates.check(trained.url, tmp_path / "gates.toml", [eid], actor="test").passed
    actions.promote(trained.url, trained.artifact, actor="test", reason="gated")
    actions.promote(trained.url, trained.artifact, actor="test", reason="first",
                    to="production", flag="chat")
    with session_scope(trained.url) as s:
        key = create_api_key(s, "k", rate_per_s=1e6, burst=10**6)
    with TestClient(create_app(trained.url)) as client:
        yield client, key


def test_server_routes_each_segment_to_its_adapter(served: tuple[TestClient, str],
                                                   trained: Trained) -> None:
    client, key = served

    def chat(seed: int, **segment: Any) -> dict[str, Any]:
        resp = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                           json={"model": "chat", "messages": [{"role": "user", "content":
                                                                 "tell me about the sea"}],
                                 "max_tokens": 96, "temperature": 1.0, "seed": seed,
                                 "user": "u1", **segment})
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    by_attrs = [chat(i, segment_attrs={"style": "concise"}) for i in range(6)]
    by_string = [chat(i, segment="style=detailed") for i in range(6)]
    assert {b["adapter"] for b in by_attrs} == {"style=concise"}
    assert {b["adapter"] for b in by_string} == {"style=detailed"}
    for fallback in ({"segment": "formal"}, {"segment_attrs": {"style": "new"}}, {}):
        assert chat(0, **fallback)["adapter"] == "global"

    def mean(bodies: list[dict[str, Any]]) -> float:
        return sum(len(b["choices"][0]["message"]["content"]) for b in bodies) / len(bodies)

    assert mean(by_attrs) < mean(by_string)  # the adapters really differ in what they serve
    with session_scope(trained.url) as s:
        row = s.scalar(select(Response).where(Response.id == by_attrs[0]["response_id"]))
        assert row is not None and row.gen_params["adapter"] == "style=concise"
    with client.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "chat", "stream": True, "max_tokens": 8, "user": "u1",
                             "segment_attrs": {"style": "detailed"},
                             "messages": [{"role": "user", "content": "Hi"}]}) as resp:
        lines = [ln for ln in resp.iter_lines() if ln.startswith("data: {")]
    last = json.loads(lines[-1][len("data: "):])
    assert last["choices"][0]["finish_reason"] == "stop" and last["adapter"] == "style=detailed"
