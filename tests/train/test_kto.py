"""KTO on single labelled responses: the loss and z0 against hand-worked numbers, exactness
of accumulation, partners, and a mixed snapshot (thumbs + pairs + ratings) end to end."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from policy_fixtures import config, context, mixed_rows, write_jsonl
from torch import Tensor, nn

from prefline.formats.examples import UnpairedExample, as_messages
from prefline.models.tiny import tiny_tokenizer
from prefline.train.dpo import run
from prefline.train.policy_batch import EncodedSingle, PackedBatch, encode_unpaired
from prefline.train.policy_config import DPOConfig
from prefline.train.policy_data import policy_kind
from prefline.train.policy_tasks import KTOTask, kto_metrics


class MinusLength(nn.Module):
    """A stand-in policy whose log-prob of a response is minus its token count."""

    def forward(self, batch: PackedBatch) -> Tensor:
        return -batch.lengths


def _single(completion: int, partner: int, desirable: bool, ref: tuple[float, float],
            weight: float = 1.0) -> EncodedSingle:
    return EncodedSingle(prompt=(1, 2), completion=(5,) * completion, partner=(6,) * partner,
                         desirable=desirable, weight=weight, ref=ref)


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# Three examples, β = 0.5, desirable weight 1, undesirable weight 1.5:
#   log π (completion, partner) = (-2, -1), (-3, -5), (-4, -3)   [MinusLength]
#   log π_ref                    = (-2.5, -1.5), (-2.0, -5.5), (-4.2, -3.3)
#   partner log-ratios 0.5, 0.5, 0.3 → z0 = max(0, 1.3 / 3) = 0.43333
#   completion log-ratios Δ = 0.5, -1.0, 0.2; labels desirable, undesirable, desirable (w=2)
#   losses: 1 - σ(0.5(0.5 - z0)),  1.5 (1 - σ(0.5(z0 + 1.0))),  2 (1 - σ(0.5(0.2 - z0)))
EXAMPLES = [_single(2, 1, True, (-2.5, -1.5)), _single(3, 5, False, (-2.0, -5.5)),
            _single(4, 3, True, (-4.2, -3.3), weight=2.0)]
Z0 = 1.3 / 3
WANT = ((1 - _sig(0.5 * (0.5 - Z0))) + 1.5 * (1 - _sig(0.5 * (Z0 + 1.0)))
        + 2 * (1 - _sig(0.5 * (0.2 - Z0))))


def _task() -> KTOTask:
    return KTOTask(DPOConfig(loss="kto", beta=0.5, undesirable_weight=1.5))


def test_kto_loss_and_z0_match_hand_worked_values() -> None:
    task = _task()
    batch = task.collate(EXAMPLES)
    task.prepare_step(MinusLength(), [batch], all_reduce=lambda v: v)
    assert task.z0 == pytest.approx(Z0)
    loss, n, metrics = task.loss(MinusLength(), batch)
    assert n == 3 and float(loss) == pytest.approx(WANT, rel=1e-6)
    assert metrics["accuracy"] == 2  # 0.5 > z0 (desirable), -1 < z0 (undesirable); 0.2 < z0
    assert metrics["kl"] == pytest.approx(3 * Z0) and metrics["desirable"] == 2


def test_z0_is_one_mean_over_the_whole_step_and_clamped_at_zero() -> None:
    task = _task()
    whole = task.collate(EXAMPLES)
    parts = [task.collate(EXAMPLES[:1]), task.collate(EXAMPLES[1:])]
    sums: list[list[float]] = []

    def reduce(values: list[float]) -> list[float]:
        sums.append(values)
        return values

    task.prepare_step(MinusLength(), parts, all_reduce=reduce)
    assert task.z0 == pytest.approx(Z0) and sums == [[pytest.approx(1.3), 3.0]]
    task.prepare_step(MinusLength(), [whole], all_reduce=lambda v: [-v[0], v[1]])
    assert task.z0 == 0.0  # a negative KL estimate is clamped


def test_heldout_kto_metrics_match_hand_values() -> None:
    logps = torch.tensor([[-2.0, -1.0], [-3.0, -5.0], [-4.0, -3.0]], dtype=torch.float64)
    got = kto_metrics(logps, EXAMPLES, beta=0.5)
    # signed Δ - z0: +(0.5 - z0), -(-1.0 - z0), +(0.2 - z0)
    signed = [0.5 - Z0, 1.0 + Z0, 0.2 - Z0]
    assert got["kl"] == pytest.approx(Z0) and got["accuracy"] == pytest.approx(2 / 3)
    assert got["margin"] == pytest.approx(0.5 * sum(signed) / 3)


def test_partners_come_from_other_prompts_and_are_seeded() -> None:
    tok = tiny_tokenizer()
    examples = [UnpairedExample(as_messages(f"q{i // 2}"), f"answer {i}", bool(i % 2),
                                prompt_key=f"k{i // 2}") for i in range(8)]
    enc, report = encode_unpaired(examples, tok, 64, seed=3)
    assert report.examples == 8
    completions = {e.completion: i for i, e in enumerate(enc)}
    for i, e in enumerate(enc):
        j = completions[e.partner]
        assert examples[j].prompt_key != examples[i].prompt_key
    again, _ = encode_unpaired(examples, tok, 64, seed=3)
    assert [e.partner for e in again] == [e.partner for e in enc]
    weighted = UnpairedExample(as_messages("w"), "fine", True, meta={"weight": 0.5})
    assert encode_unpaired([weighted], tok, 64)[0][0].weight == 0.5


def test_kto_accumulation_equals_large_batch(tmp_path: Path, tiny_causal_dir: Path) -> None:
    data = write_jsonl(tmp_path / "mixed.jsonl", mixed_rows())

    def losses(out: str, **train: Any) -> list[float]:
        res = run(config(data, tiny_causal_dir, loss="kto", val_fraction=0.0,
                         train={"max_steps": 3, **train}), context(tmp_path / out))
        return [h["loss"] for h in res.history]

    big = losses("big", batch_size=4)
    torch.testing.assert_close(losses("acc", batch_size=2, grad_accum=2), big,
                               rtol=1e-5, atol=1e-6)
    assert big[0] == pytest.approx(0.5, abs=1e-3)  # policy == reference: 1 - σ(0) everywhere


def test_kto_on_a_mixed_snapshot_uses_thumbs_and_split_pairs(
        tmp_path: Path, tiny_causal_dir: Path, sqlite_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.cli import main
    from prefline.store.db import upgrade
    from prefline.store.ingest import import_file
    from prefline.store.snapshots import create_snapshot, snapshot_examples

    upgrade(sqlite_url)
    import_file(write_jsonl(tmp_path / "mixed.jsonl", mixed_rows()), sqlite_url)
    snap = create_snapshot(sqlite_url, "mixed", test_fraction=0.2)
    kinds = Counter(policy_kind(ex) for ex in snapshot_examples(snap.id, "train", sqlite_url))
    assert kinds["binary"] and kinds["pairwise"] and kinds["rating"]  # the test needs all three
    main(["train", "dpo", "--snapshot", str(snap.id), "--loss", "kto", "--model",
          str(tiny_causal_dir), "--out", str(tmp_path / "run"), "--db", sqlite_url, "--json",
          "max_steps=2", "batch_size=4", "precision=fp32", "val_fraction=0.2"])
    out = json.loads(capsys.readouterr().out)
    counts = out["counts"]
    want_used = {"binary": kinds["binary"], "pairwise→split": kinds["pairwise"]}
    if kinds["ranking"]:
        want_used["ranking→pairs→split"] = kinds["ranking"]
    assert counts["used"] == want_used
    assert counts["ignored"] == {"rating": {
        "count": kinds["rating"], "why": "KTO needs a desirable/undesirable label; ratings "
                                         "train a reward model (prefline train reward)"}}
    examples = kinds["binary"] + 2 * kinds["pairwise"] + 6 * kinds["ranking"]
    assert counts["examples"]["train"] + counts["examples"]["val"] == examples
    assert out["loss"] == "kto" and out["metrics"]["train"]["kl"] >= 0
    assert out["inputs"][0] == {"role": "snapshot", "snapshot_id": snap.id, "artifact_id": None,
                                "ref": None}
