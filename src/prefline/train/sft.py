"""Supervised fine-tuning: ``run(cfg: SFTConfig, ctx) -> SFTResult``.

Maximises log π(response | prompt) on demonstrations, summed over response tokens only (the
prompt is context, never a target) and divided by the step's response-token count, so long
and short demonstrations weigh per token. It runs on the one engine with the policy
stages' encoding and packing (:func:`~prefline.train.policy_batch.encode_unpaired`, whose
completions end with the end-of-turn token, so the policy learns where to stop).

Demonstrations come from a best-of-N file (each prompt's best candidate: rejection
sampling, ``prefline generate --best-of N --reward RM``) or from preference data: a response
is a demonstration when it was preferred or approved and never lost a comparison or got a
thumbs-down for its prompt (a ranking's first response, an undefeated chosen response, a
thumbs-up). SFT is also the warm start of the online methods.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.base.hashing import file_sha256
from prefline.base.splits import carve, prompt_key_of
from prefline.base.stage import Ref, StageResult
from prefline.formats.examples import UnpairedExample
from prefline.generate.best_of_n import read_best_of_n
from prefline.models.embedded import DEFAULT_POLICY
from prefline.models.hub import load_causal_lm
from prefline.store.context import Context
from prefline.train.dpo import export_policy
from prefline.train.engine import Trainer
from prefline.train.logprobs import SequenceLogps
from prefline.train.policy_batch import EncodedSingle, PackedBatch, encode_unpaired, pack
from prefline.train.policy_data import FeedbackUse, PolicyData, load_policy_data
from prefline.train.reward_data import file_splits
from prefline.train.sft_config import SFTConfig

__all__ = ["SFTConfig", "SFTResult", "SFTTask", "demonstrations", "fit_sft", "run"]


@dataclass
class SFTResult(StageResult):
    """A fine-tuned policy: where it is, how it did, what it imitated."""

    artifact_kind: ClassVar[str] = "policy"

    path: Path
    """The exported policy (``<run>/model``)."""
    run_dir: Path
    steps: int
    metrics: dict[str, Any]
    """``train`` (last step: per-token NLL as ``loss``), ``val`` and ``heldout``: ``nll``
    (per response token, nats) before (``*_before``) and after training."""
    counts: dict[str, int]
    """Demonstrations per split."""
    inputs: tuple[Ref, ...]
    snapshot_hash: str
    notes: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    policy: Any = field(default=None, repr=False, compare=False)

    json_omit: ClassVar[tuple[str, ...]] = ("policy", "history")
    """The in-memory model and the per-step history (in train_log.jsonl) stay out of JSON."""


class SFTTask:
    """Engine Task: a batch's summed response-token NLL; the count is its response tokens,
    so the engine's division gives the step's mean NLL per token."""

    def __init__(self, row_tokens: int = 0, pad_id: int = 0) -> None:
        self.row_tokens, self.pad_id = row_tokens, pad_id

    def collate(self, examples: Sequence[EncodedSingle]) -> PackedBatch:
        return pack(examples, self.row_tokens, self.pad_id, which=(0,))

    def count(self, batch: PackedBatch) -> float:
        return float(batch.lengths.sum())

    def loss(self, model: nn.Module, batch: PackedBatch) -> tuple[Tensor, float, dict[str, float]]:
        nll = -model(batch).sum()
        return nll, float(batch.lengths.sum()), {"tokens": float(batch.tokens)}


def demonstrations(examples: Sequence[UnpairedExample]) -> list[UnpairedExample]:
    """The desirable examples whose response was never undesirable for its prompt, once each."""
    lost = {(prompt_key_of(e), e.completion) for e in examples if not e.label}
    seen: set[tuple[str, str]] = set()
    out = []
    for e in examples:
        key = (prompt_key_of(e), e.completion)
        if e.label and key not in lost and key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _best_of_n_data(cfg: SFTConfig, picked: list[tuple[Any, str]], path: str) -> PolicyData:
    examples = [UnpairedExample(p, r, True) for p, r in picked]
    rest, heldout = file_splits(examples, cfg.test_fraction, cfg.train.seed)
    train, val = carve(rest, cfg.val_fraction, cfg.train.seed)
    digest = file_sha256(Path(path))
    use = FeedbackUse({"best-of-N": len(examples)}, {})
    return PolicyData(train, val, heldout, use, Ref("data", ref=digest), digest)


def load_sft_data(cfg: SFTConfig, ctx: Context) -> PolicyData:
    """The demonstrations by split (module docstring); fails before any model loads."""
    picked = read_best_of_n(cfg.data) if cfg.data is not None else None
    if picked is not None and cfg.data is not None:
        return _best_of_n_data(cfg, picked, cfg.data)
    data = load_policy_data(snapshot=cfg.snapshot, data=cfg.data, db=ctx.db, kto=True,
                            val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                            seed=cfg.train.seed)
    data.train, data.val, data.heldout = (demonstrations(data.train), demonstrations(data.val),
                                          demonstrations(data.heldout))
    if not data.train:
        raise PreflineError("no demonstrations to imitate: no preferred or approved response "
                            "that never lost a comparison", field="data" if cfg.data else
                            "snapshot")
    return data


def run(cfg: SFTConfig, ctx: Context) -> SFTResult:
    """Read the demonstrations (failing before any model loads), load the policy, train,
    export."""
    data = load_sft_data(cfg, ctx)
    lm, tok = load_causal_lm(cfg.model)
    return fit_sft(cfg, ctx, data, lm, tok, base_model=cfg.model or f"embedded:{DEFAULT_POLICY}")


def mean_nll(logps_fn: nn.Module, items: Sequence[EncodedSingle], pad_id: int,
             batch: int = 16) -> float:
    """Mean NLL per response token (nats) of ``items``, no grad."""
    total = tokens = 0.0
    with torch.no_grad():
        for s in range(0, len(items), batch):
            b = pack(items[s:s + batch], pad_id=pad_id, which=(0,))
            total -= float(logps_fn(b).sum())
            tokens += float(b.lengths.sum())
    return total / max(tokens, 1.0)


def fit_sft(cfg: SFTConfig, ctx: Context, data: PolicyData, lm: Any, tokenizer: Any, *,
            base_model: str) -> SFTResult:
    """Train ``lm`` on ``data``'s demonstrations; ``base_model`` names it for lineage."""
    out = ctx.require_run_dir()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sets = [encode_unpaired(split, tokenizer, cfg.max_length, seed=cfg.train.seed,
                            required=name == "train")
            for name, split in (("train", data.train), ("val", data.val),
                                ("heldout", data.heldout))]
    (train, report), (val, _), (held, _) = sets
    logps_fn = SequenceLogps(lm, chunk=cfg.logits_chunk)
    lm.eval()
    before = {k: mean_nll(logps_fn, v, pad_id) for k, v in (("val", val), ("heldout", held)) if v}

    def evaluate(module: nn.Module) -> dict[str, float]:
        nll = mean_nll(module, val, pad_id)
        return {"nll": nll, "neg_nll": -nll}

    settings = {k: v for k, v in config.to_dict(cfg).items() if k not in ("snapshot", "data")}
    trainer = Trainer(logps_fn, SFTTask(pad_id=pad_id), train, cfg.train, run_dir=out,
                      progress=ctx.progress, evaluate=evaluate if val else None,
                      fingerprint={"config": settings, "data": data.source_hash,
                                   "model": base_model})
    fit = trainer.fit()
    path = export_policy(lm, tokenizer, out, "merged", write=trainer.rank == 0,
                         base_model=base_model)
    lm.eval()
    metrics: dict[str, Any] = {"steps": fit.steps,
                               "train": {"loss": fit.history[-1]["loss"]} if fit.history else {}}
    for name, items in (("val", val), ("heldout", held)):
        if items:
            metrics[name] = {"nll": mean_nll(logps_fn, items, pad_id),
                             "nll_before": before[name]}
    result = SFTResult(
        path=path, run_dir=out, steps=fit.steps, metrics=metrics,
        counts={"train": len(train), "val": len(val), "heldout": len(held)},
        inputs=(data.source, Ref("base_model", ref=base_model)), snapshot_hash=data.source_hash,
        notes=report.notes, history=fit.history, policy=lm)
    if trainer.rank == 0:
        (out / "summary.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
    return result
