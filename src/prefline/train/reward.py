"""The reward-model stage: ``run(RewardConfig, Context) -> RewardResult``.

load (a snapshot's train split, or a file less its held-out prompts) → count the kinds of
feedback used and ignored → carve ``val`` from train by prompt → tokenise once → for each
ensemble member: train with the shared engine (early stopping on val pairwise accuracy) →
normalise rewards on the training responses → fit a temperature on val (ECE before/after)
→ save safetensors + model card in the run folder.

The held-out figures come from the ``eval reward`` stage on the snapshot's test split
(:mod:`prefline.evaluate.reward`): one evaluator, never tuned on. ``prefline train reward``
runs it after training. The stage does not register anything; the caller records the
result (``prefline.registry.record_result``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from prefline.base import config
from prefline.base.distributed import place, rank
from prefline.base.errors import PreflineError
from prefline.base.precision import autocast_context, resolve_precision
from prefline.base.privacy import k_anonymous, suppressed_note
from prefline.base.stage import Ref, StageResult
from prefline.base.tracking import log_paths
from prefline.formats.examples import PreferencePair, RankingExample
from prefline.formats.load import ranking_pairs
from prefline.models.calibration import fit_temperature, pairwise_ece
from prefline.models.personal import PersonalSpec, group_counts
from prefline.models.reward import RewardEnsemble, RewardModel
from prefline.store.context import Context
from prefline.train.engine import Trainer, TrainResult
from prefline.train.reward_config import RewardConfig
from prefline.train.reward_data import (
    FeedbackCounts,
    RewardData,
    check_token_room,
    load_reward_data,
    rating_stats,
)
from prefline.train.reward_dp import fit_dp
from prefline.train.reward_task import Item, RewardTask, tokenize
from prefline.train.train_config import TrainConfig


@dataclass(frozen=True)
class RewardMetrics:
    """Validation figures of the trained model (held-out ones come from ``eval reward``)."""

    temperature: float
    """Fitted on val pairs: P(a ≻ b) = σ((r_a − r_b) / T)."""
    val_pairs: int
    """Strict val pairs (rankings count as their implied pairs)."""
    val_accuracy: float
    val_ece_before: float
    """ECE at T = 1."""
    val_ece_after: float
    """ECE at the fitted T."""


@dataclass(frozen=True)
class RewardResult(StageResult):
    """A trained reward model (or ensemble) in the run folder."""

    artifact_kind: ClassVar[str] = "reward_model"
    path: Path
    metrics: RewardMetrics
    counts: FeedbackCounts
    """Records of the training split by kind: used, ignored, and why."""
    splits: dict[str, int]
    """Examples in train, val and test (test: held out for ``eval reward``)."""
    card: dict[str, Any]
    """The saved model card."""
    inputs: tuple[Ref, ...]
    """The snapshot (or data file hash) and the base model."""
    snapshot_hash: str
    """Content hash of the training data (the snapshot's, or the file's SHA-256)."""


def run(cfg: RewardConfig, ctx: Context) -> RewardResult:
    """Train, normalise, calibrate and save a reward model or ensemble (module docstring)."""
    out = ctx.require_run_dir()
    data = load_reward_data(snapshot=cfg.snapshot, data=cfg.data, db=ctx.db,
                            val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                            seed=cfg.train.seed)
    _check_usable(data.train)
    personal, personal_note = personal_spec(cfg, data.train)
    stats = rating_stats(data.train)
    val_pairs = [p for ex in data.val for p in _as_pairs(ex)]
    members: list[RewardModel] = []
    histories: list[dict[str, Any]] = []
    items_train: list[Item] = []
    items_val: list[Item] = []
    truncation: dict[str, int] = {}
    dp: dict[str, Any] = {}
    for k in range(cfg.ensemble):
        model = place(_new_model(cfg, cfg.train.seed + k, personal), ctx.torch_device)
        if k == 0:  # tokenisation does not depend on the weights: do it once
            check_token_room(model.builder, data.train)
            items_train, items_val = tokenize(model, data.train, stats), tokenize(model, val_pairs)
            truncation = dict(model.builder.counts)
        run_dir = (out / f"member-{k}" if cfg.ensemble > 1 else out) / "run"
        if cfg.dp_epsilon is not None:
            fit, dp = fit_dp(model, items_train, cfg, ctx)
        else:
            fit, model = _fit(model, _member_data(items_train, cfg, k), items_val, cfg, k,
                              run_dir, ctx, resume_fingerprint(cfg, data.source_hash, model))
            normalise(model, items_train)  # (DP: not fitted on the private data)
        histories.append({"steps": fit.steps, "best": fit.best})
        members.append(model)
    metrics = _calibrate(members, items_val, fit=cfg.dp_epsilon is None)
    card = {"config": config.to_dict(cfg), "snapshot_hash": data.source_hash,
            "metrics": config.to_dict(metrics), "training": histories, "truncation": truncation,
            "splits": _splits(data), "feedback": config.to_dict(data.counts)}
    if personal is not None:
        card["personal"] = {"key": personal.key, "mode": personal.mode,
                            "groups": len(personal.groups), "suppressed": personal_note}
    if cfg.dp_epsilon is not None:
        card["differential_privacy"] = dp
    # Every rank holds the same trained model; one writes it (the others' result is unused).
    saved = _save(members, out, card).card if rank() == 0 else card
    if rank() == 0:
        log_paths(cfg.train.report_to, out / "run" if cfg.ensemble == 1 else out,
                  {"model": out}, {"val": config.to_dict(metrics)})
    source = (Ref("snapshot", snapshot_id=data.snapshot_id) if data.snapshot_id is not None
              else Ref("data", ref=data.source_hash))
    return RewardResult(out, metrics, data.counts, _splits(data), saved,
                        (source, Ref("base_model", ref=members[0].spec.backbone)),
                        data.source_hash)


def _splits(data: RewardData) -> dict[str, int]:
    return {"train": len(data.train), "val": len(data.val), "test": len(data.test)}


def _as_pairs(example: Any) -> list[Any]:
    """Validation compares pairs: a ranking counts as its implied pairs; ratings have none."""
    if isinstance(example, PreferencePair):
        return [example]
    if isinstance(example, RankingExample):
        return list(ranking_pairs(example))
    return []


def personal_spec(cfg: RewardConfig, train: list[Any]) -> tuple[PersonalSpec | None, str | None]:
    """The conditioning of a personalised model: the values of ``segment_key`` with at least
    ``min_group_size`` training examples (k-anonymity: smaller ones use the fallback and go
    unnamed), and the note on how many were suppressed."""
    if cfg.personal == "none":
        return None, None
    counts = group_counts(train, cfg.segment_key)
    groups = tuple(sorted(k_anonymous(counts, cfg.min_group_size)))
    return (PersonalSpec(cfg.personal, cfg.segment_key, groups, cfg.personal_dim),
            suppressed_note(counts, cfg.min_group_size))


def _new_model(cfg: RewardConfig, seed: int, personal: PersonalSpec | None) -> RewardModel:
    lora = {"r": cfg.lora_r, "alpha": cfg.lora_alpha} if cfg.lora else None
    return RewardModel.create(cfg.model, pooling=cfg.pooling, max_length=cfg.max_length,
                              heads=cfg.head_spec(), lora=lora, dropout=cfg.dropout,
                              attention_dropout=cfg.attention_dropout,
                              head_dropout=cfg.head_dropout, seed=seed,
                              train_embeddings=cfg.train_embeddings, personal=personal)


def _check_usable(train: list[Any]) -> None:
    if not train:
        raise PreflineError("no training examples left after carving the val split; give "
                            "more data or lower val_fraction", field="val_fraction")
    pairs = [e for e in train if isinstance(e, PreferencePair)]
    if pairs and len(pairs) == len(train) and all(p.tie for p in pairs):
        raise PreflineError("every training pair is a tie; a reward model needs at least one "
                            "pair with a preferred response")


def _member_data(items: list[Item], cfg: RewardConfig, k: int) -> list[Item]:
    if cfg.ensemble_mode != "bootstrap" or cfg.ensemble == 1:
        return items
    rng = random.Random(cfg.train.seed * 7919 + k)
    return [items[rng.randrange(len(items))] for _ in items]


def _engine(cfg: RewardConfig, member: int, steps_per_epoch: int, has_val: bool) -> TrainConfig:
    """The engine config of ensemble member ``member``: its seed is offset by it, and it
    evaluates once per epoch unless told otherwise (no val pairs: no early stopping)."""
    t = cfg.train
    return replace(t, seed=t.seed + member,
                   eval_every=(t.eval_every or steps_per_epoch) if has_val else None,
                   early_stopping_patience=t.early_stopping_patience if has_val else None)


def resume_fingerprint(cfg: RewardConfig, source_hash: str, model: RewardModel) -> dict[str, Any]:
    """What a resumed run must share with its checkpoint (the engine adds its own settings);
    the data is compared by its hash, not by where it is read from."""
    settings = {k: v for k, v in config.to_dict(cfg).items() if k not in ("snapshot", "data")}
    return {"config": settings, "data": source_hash, "model": model.spec.backbone}


def _fit(model: RewardModel, items: list[Item], val: list[Item], cfg: RewardConfig,
         member: int, run_dir: Path, ctx: Context,
         fingerprint: dict[str, Any]) -> tuple[TrainResult, RewardModel]:
    """The engine's result and the trained model (outside DDP/FSDP)."""
    task = RewardTask(model.make_batch, tie_loss=cfg.tie_loss,
                      label_smoothing=cfg.label_smoothing, use_margin=cfg.use_margin,
                      center_coef=cfg.center_coef, personal=model.personal is not None,
                      fallback_drop=cfg.fallback_drop, seed=cfg.train.seed + member)
    strict_val = [it for it in val if it.kind == "pair"]
    per_epoch = max(1, len(items) // (cfg.train.batch_size * cfg.train.grad_accum))

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        d = pair_deltas(m, strict_val)  # type: ignore[arg-type]
        return {"accuracy": float((d > 0).float().mean()), "margin": float(d.mean())}

    trainer = Trainer(model, task, items, _engine(cfg, member, per_epoch, bool(strict_val)),
                      run_dir=run_dir, progress=ctx.progress,
                      evaluate=evaluate if strict_val else None, fingerprint=fingerprint,
                      run_folder=ctx.run_dir, device=ctx.torch_device)
    fit = trainer.fit()
    return fit, trainer.plain_model()  # type: ignore[return-value]


@torch.no_grad()
def pair_deltas(model: RewardModel, items: list[Item], chunk: int = 64) -> torch.Tensor:
    """Raw combined ``r_chosen - r_rejected`` for pair/tie items, ``[P]`` fp32."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(items), chunk):
        part = items[i:i + chunk]
        seqs = [s for it in part for s in it.seqs[:2]]
        scores = model.combine(model(model.make_batch(seqs), _groups(model, part, 2)))
        out.append(scores[0::2] - scores[1::2])
    model.train(was_training)
    return torch.cat(out).cpu() if out else torch.zeros(0)


def normalise(model: RewardModel, items: list[Item], max_seqs: int = 2000) -> None:
    """Set the model's reward mean/std from the responses of ``items`` (mean 0, std 1)."""
    seqs = [s for it in items for s in it.seqs][:max_seqs]
    groups = [it.group for it in items for _ in it.seqs][:max_seqs]
    model.eval()
    raw = []
    device = next(model.parameters()).device
    with torch.no_grad(), autocast_context(resolve_precision("auto", device), device):
        for i in range(0, len(seqs), 128):
            part = seqs[i:i + 128]
            index = torch.tensor(groups[i:i + 128]) if model.personal is not None else None
            raw.append(model.combine(model(model.make_batch(part), index)))
    r = torch.cat(raw).double().cpu()
    model.norm_mean = float(r.mean())
    model.norm_std = float(r.std()) if r.numel() > 1 and float(r.std()) > 1e-6 else 1.0


def _groups(model: RewardModel, items: list[Item], per_item: int) -> torch.Tensor | None:
    """Each sequence's group index (``per_item`` sequences per item); None when the model is
    not personalised."""
    if model.personal is None:
        return None
    return torch.tensor([it.group for it in items for _ in range(per_item)], dtype=torch.long)


def _calibrate(members: list[RewardModel], val: list[Item], fit: bool = True) -> RewardMetrics:
    """Fit one temperature for the (averaged) normalised margins on strict val pairs (not
    with ``fit`` False: a DP model keeps T = 1, as the val pairs are private too)."""
    strict = [it for it in val if it.kind == "pair"]
    device = next(members[0].parameters()).device
    with autocast_context(resolve_precision("auto", device), device):
        deltas = np.mean([(pair_deltas(m, strict) / m.norm_std).numpy() for m in members], 0) \
            if strict else np.zeros(0)
    temperature = fit_temperature(deltas) if deltas.size and fit else 1.0
    for m in members:
        m.temperature = temperature
    some = bool(deltas.size)
    return RewardMetrics(
        temperature=temperature, val_pairs=int(deltas.size),
        val_accuracy=float((deltas > 0).mean()) if some else math.nan,
        val_ece_before=pairwise_ece(deltas, 1.0) if some else math.nan,
        val_ece_after=pairwise_ece(deltas, temperature) if some else math.nan)


def _save(members: list[RewardModel], out: Path,
          card: dict[str, Any]) -> RewardModel | RewardEnsemble:
    if len(members) == 1:
        members[0].save(out, card)
        return members[0]
    for m in members:
        m.card = {"snapshot_hash": card["snapshot_hash"], "config": card["config"]}
    ensemble = RewardEnsemble(members, members[0].temperature)
    ensemble.save(out, card)
    return ensemble
