"""``train_reward(cfg) -> RewardArtifact``: the reward-model stage, end to end.

load examples → prompt-grouped train/val/test split → tokenise once → for each ensemble
member: train with the shared engine (early stopping on val pairwise accuracy) → normalise
rewards on the training responses → fit a temperature on val (ECE before/after) → evaluate
on the held-out test pairs → save safetensors + model card → register the artifact.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter
from prefline.formats.examples import PreferencePair
from prefline.models.ensemble import RewardEnsemble
from prefline.models.reward import HeadSpec, RewardModel
from prefline.train.engine import TrainConfig, Trainer
from prefline.train.reward_data import load_reward_examples, rating_stats, split_by_prompt
from prefline.train.reward_task import Item, RewardTask, tokenize


@dataclass(frozen=True)
class RewardTrainConfig:
    """Everything ``prefline train reward`` accepts (``--key value`` overrides any field)."""

    out: str = "reward-model"
    data: str | None = None
    """A pairs/rankings/ratings file (any format ``prefline import`` reads)."""
    snapshot: str | None = None
    """A snapshot id in the store, instead of ``data``."""
    db: str | None = None
    model: str | None = None
    """Backbone (HF id or local path); default: the embedded all-MiniLM-L6-v2."""
    pooling: str | None = None
    max_length: int = 512
    heads: tuple[str, ...] = ("reward",)
    head_weights: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    dropout: float | None = None
    train_embeddings: bool = False
    head_dropout: float = 0.1
    tie_loss: str = "davidson"
    label_smoothing: float = 0.0
    use_margin: bool = False
    """Use each pair's ``strength`` as the Bradley-Terry margin."""
    center_coef: float | None = None
    train: dict[str, Any] = field(default_factory=dict)
    """Engine settings: any :class:`TrainConfig` field but ``out_dir`` (lr, epochs, batch_size,
    grad_accum, precision, seed, resume, ...); :data:`ENGINE_DEFAULTS` fills the rest."""
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    ensemble: int = 1
    ensemble_mode: str = "seed"
    """seed: members differ by seed; bootstrap: each also trains on a resample of the data."""
    register: bool = True

    def __post_init__(self) -> None:
        if (self.data is None) == (self.snapshot is None):
            raise PreflineError("give exactly one of --data FILE or --snapshot ID", field="data")
        if self.ensemble < 1:
            raise PreflineError("ensemble must be at least 1", field="ensemble")
        if self.ensemble_mode not in ("seed", "bootstrap"):
            raise PreflineError("ensemble_mode must be seed or bootstrap", field="ensemble_mode")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 0.5:
                raise PreflineError(f"{name} must be in [0, 0.5)", field=name)

        unknown = set(self.train) - ENGINE_FIELDS
        if unknown:
            raise PreflineError(f"unknown training setting(s) {sorted(unknown)}", field="train")
        self.engine(Path("."), 0, None)  # validates the engine settings now, not mid-run

    def setting(self, key: str) -> Any:
        return {**ENGINE_DEFAULTS, **self.train}.get(key, TRAIN_DEFAULTS.get(key))

    def engine(self, out_dir: Path, member: int, eval_every: int | None) -> TrainConfig:
        """The engine config of ensemble member ``member`` (its seed is offset by it)."""
        values = {**ENGINE_DEFAULTS, **self.train, "early_stopping_metric": "accuracy"}
        values.pop("progress", None)  # the run folder and progress go to Trainer, not here
        values["seed"] = int(values.get("seed", 0)) + member
        values["eval_every"] = values.get("eval_every") or eval_every
        if not values["eval_every"]:  # nothing to stop on without held-out pairs
            values["early_stopping_patience"] = None
        return TrainConfig(**values)


ENGINE_DEFAULTS: dict[str, Any] = {"lr": 5e-5, "weight_decay": 0.01, "epochs": 2,
                                   "early_stopping_patience": 2}
"""Where reward training departs from the engine's own defaults."""
ENGINE_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} | {"progress"}
TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


@dataclass
class RewardArtifact:
    path: Path
    artifact_id: int | None
    metrics: dict[str, Any]
    card: dict[str, Any]


def train_reward(cfg: RewardTrainConfig) -> RewardArtifact:
    """Train, calibrate, evaluate, save and register a reward model (or ensemble)."""
    examples, source_hash = load_reward_examples(cfg.data, cfg.snapshot, cfg.db)
    train, val, test = split_by_prompt(examples, cfg.val_fraction, cfg.test_fraction,
                                        cfg.setting("seed"))
    _check_usable(train)
    out = Path(cfg.out)
    stats = rating_stats(examples)
    members: list[RewardModel] = []
    items_train: list[Item] = []
    items_val: list[Item] = []
    histories = []
    for k in range(cfg.ensemble):
        model = _new_model(cfg, seed=cfg.setting("seed") + k)
        if k == 0:  # tokenisation does not depend on the weights: do it once
            items_train, items_val = tokenize(model, train, stats), tokenize(model, val, stats)
            truncation = dict(model.builder.counts)
        data = _member_data(items_train, cfg, k)
        run_dir = out / (f"member-{k}" if cfg.ensemble > 1 else ".") / "run"
        result = _fit(model, data, items_val, cfg, run_dir, member=k)
        histories.append({"steps": result.steps, "best": result.best})
        normalise(model, items_train)
        members.append(model)
    metrics = _calibrate_and_evaluate(members, items_val, test)
    card: dict[str, Any] = {"config": _jsonable(asdict(cfg)), "snapshot_hash": source_hash, "metrics": metrics,
            "training": histories, "truncation": truncation,
            "splits": {"train": len(train), "val": len(val), "test": len(test)}}
    scorer = _scorer(members)
    saved = _save(scorer, members, out, card)
    art_id = None
    if cfg.register:
        from prefline.registry import Ref, record
        from prefline.store.snapshots import get_snapshot

        source_ref = (Ref("snapshot", snapshot_id=get_snapshot(cfg.snapshot, cfg.db).id)
                      if cfg.snapshot is not None else Ref("data", ref=source_hash))
        art_id = record(cfg.db, "reward_model", saved, config=card["config"],
                        snapshot_hash=source_hash, metrics=metrics,
                        inputs=[source_ref, Ref("base_model", ref=members[0].spec.backbone)])
    return RewardArtifact(saved, art_id, metrics, scorer.card)


def _new_model(cfg: RewardTrainConfig, seed: int) -> RewardModel:
    lora = {"r": cfg.lora_r, "alpha": cfg.lora_alpha} if cfg.lora else None
    heads = HeadSpec(tuple(cfg.heads), dict(cfg.head_weights), dict(cfg.thresholds))
    return RewardModel.create(cfg.model, pooling=cfg.pooling, max_length=cfg.max_length,
                              heads=heads, lora=lora, dropout=cfg.dropout,
                              head_dropout=cfg.head_dropout, seed=seed,
                              train_embeddings=cfg.train_embeddings)


def _check_usable(train: list[Any]) -> None:
    if not train:
        raise PreflineError("no training examples after the train/val/test split; "
                            "give more pairs or lower val_fraction/test_fraction")
    pairs = [e for e in train if isinstance(e, PreferencePair)]
    others = len(train) - len(pairs)
    if pairs and all(p.tie for p in pairs) and not others:
        raise PreflineError("every training pair is a tie; a reward model needs at least one "
                            "pair with a preferred response")


def _member_data(items: list[Item], cfg: RewardTrainConfig, k: int) -> list[Item]:
    if cfg.ensemble_mode != "bootstrap" or cfg.ensemble == 1:
        return items
    rng = random.Random(cfg.setting("seed") * 7919 + k)
    return [items[rng.randrange(len(items))] for _ in items]


def _fit(model: RewardModel, items: list[Item], val: list[Item], cfg: RewardTrainConfig,
         run_dir: Path, member: int) -> Any:
    task = RewardTask(model.make_batch, tie_loss=cfg.tie_loss,
                      label_smoothing=cfg.label_smoothing, use_margin=cfg.use_margin,
                      center_coef=cfg.center_coef)
    strict_val = [it for it in val if it.kind == "pair"]
    per_epoch = max(1, len(items) // (cfg.setting("batch_size") * cfg.setting("grad_accum")))
    eval_every = per_epoch if strict_val else None

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        d = pair_deltas(m, strict_val)  # type: ignore[arg-type]
        return {"accuracy": float((d > 0).float().mean()),
                "margin": float(d.mean())}

    shown = Reporter(bool(cfg.train.get("progress", True)))
    trainer = Trainer(model, task, items, cfg.engine(run_dir, member, eval_every),
                      run_dir=run_dir, progress=shown, evaluate=evaluate if strict_val else None)
    return trainer.fit()


@torch.no_grad()
def pair_deltas(model: RewardModel, items: list[Item], chunk: int = 64) -> torch.Tensor:
    """Raw combined ``r_chosen - r_rejected`` for pair/tie items, ``[P]`` fp32."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(items), chunk):
        seqs = [s for it in items[i:i + chunk] for s in it.seqs[:2]]
        scores = model.combine(model(model.make_batch(seqs)))
        out.append(scores[0::2] - scores[1::2])
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def normalise(model: RewardModel, items: list[Item], max_seqs: int = 2000) -> None:
    """Set the model's reward mean/std from the responses of ``items`` (mean 0, std 1)."""
    from prefline.base.precision import autocast_context, resolve_precision

    seqs = [s for it in items for s in it.seqs][:max_seqs]
    model.eval()
    raw = []
    with torch.no_grad(), autocast_context(resolve_precision("auto")):
        for i in range(0, len(seqs), 128):
            part = seqs[i:i + 128]
            raw.append(model.combine(model(model.make_batch(part))))
    r = torch.cat(raw).double()
    model.norm_mean = float(r.mean())
    model.norm_std = float(r.std()) if r.numel() > 1 and float(r.std()) > 1e-6 else 1.0


def _calibrate_and_evaluate(members: list[RewardModel], val: list[Item],
                            test: list[Any]) -> dict[str, Any]:
    from prefline.base.precision import autocast_context, resolve_precision
    from prefline.evaluate.reward import evaluate_pairs
    from prefline.evaluate.stats import fit_temperature, pairwise_ece

    strict = [it for it in val if it.kind == "pair"]
    with autocast_context(resolve_precision("auto")):
        deltas = np.mean([(pair_deltas(m, strict) / m.norm_std).numpy() for m in members], 0) \
            if strict else np.zeros(0)
    temperature = fit_temperature(deltas) if deltas.size else 1.0
    for m in members:
        m.temperature = temperature
    metrics: dict[str, Any] = {
        "temperature": temperature,
        "val_accuracy": float((deltas > 0).mean()) if deltas.size else math.nan,
        "val_ece_before": pairwise_ece(deltas, 1.0) if deltas.size else math.nan,
        "val_ece_after": pairwise_ece(deltas, temperature) if deltas.size else math.nan,
    }
    test_pairs = [p for p in test if isinstance(p, PreferencePair)]
    if test_pairs:
        res = evaluate_pairs(_scorer(members), test_pairs)
        metrics.update({f"test_{k}": v for k, v in res.items()
                        if k in ("accuracy", "accuracy_ci", "ece", "n_pairs")})
    return metrics


def _scorer(members: list[RewardModel]) -> RewardModel | RewardEnsemble:
    if len(members) == 1:
        return members[0]
    return RewardEnsemble(members, members[0].temperature)


def _save(scorer: RewardModel | RewardEnsemble, members: list[RewardModel], out: Path,
          card: dict[str, Any]) -> Path:
    if isinstance(scorer, RewardEnsemble):
        for m in members:
            m.card = {"snapshot_hash": card["snapshot_hash"], "config": card["config"]}
    return scorer.save(out, card)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def config_from(values: dict[str, Any], base: RewardTrainConfig | None = None) -> RewardTrainConfig:
    """Typed config from strings/JSON values (CLI overrides, config files); engine settings
    (TrainConfig fields) go into ``train``."""
    import json

    own = {f.name: str(f.type) for f in dataclasses.fields(RewardTrainConfig)}
    eng = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    typed: dict[str, Any] = {}
    train = dict(base.train) if base else {}
    for key, value in values.items():
        if key == "train" and isinstance(value, dict):
            train.update({k: _coerce(k, eng.get(k, "str"), v, json) for k, v in value.items()})
        elif key in own:
            typed[key] = _coerce(key, own[key], value, json)
        elif key in ENGINE_FIELDS:
            train[key] = _coerce(key, eng.get(key, "bool"), value, json)
        else:
            raise PreflineError(f"unknown setting {key!r}", field=key)
    typed["train"] = train
    return replace(base, **typed) if base else RewardTrainConfig(**typed)


def _coerce(key: str, type_name: str, value: Any, json: Any) -> Any:
    if not isinstance(value, str):
        return tuple(value) if isinstance(value, list) else value
    try:
        if value.lower() in ("none", "null") and "None" in type_name:
            return None
        if type_name.startswith("bool"):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if type_name.startswith("int"):
            return int(value)
        if type_name.startswith("float"):
            return float(value)
        if type_name.startswith("tuple"):
            return tuple(x.strip() for x in value.split(",") if x.strip())
        if type_name.startswith("dict"):
            return {k: float(v) for k, v in json.loads(value).items()}
    except (ValueError, AttributeError, TypeError):
        raise PreflineError(f"cannot read {value!r} as {type_name}", field=key) from None
    return value
