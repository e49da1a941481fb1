"""The ``eval reward`` stage: ``run(RewardEvalConfig, Context) -> RewardEvalResult``.

A reward model's held-out set is its snapshot's ``test`` split; for a model trained on a
file, it is the prompts that training held out of that file, found again from the fractions
and seed in the model card by the same rule (:mod:`prefline.train.reward_data`). Pairs and
rankings (as their implied pairs, :func:`prefline.formats.load.ranking_pairs`) give accuracy
and calibration; ratings give rank agreement; thumbs are counted and left out, as in
training. The metrics themselves are in :mod:`prefline.evaluate.reward_metrics`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import select

from prefline.base.errors import PreflineError
from prefline.base.hashing import file_sha256
from prefline.base.splits import carve
from prefline.base.stage import Ref, StageResult
from prefline.base.tracking import log_run
from prefline.evaluate.reward_config import RewardEvalConfig
from prefline.evaluate.reward_metrics import RewardEvalMetrics, evaluate_reward, load_rewardbench
from prefline.evaluate.reward_report import write_report
from prefline.evaluate.reward_segments import personal_key, segment_table
from prefline.formats.examples import PreferencePair, RankingExample, RatingExample
from prefline.formats.load import load_examples, ranking_pairs
from prefline.models.reward import Scorer, load_reward_model, place_reward_model
from prefline.store.context import Context
from prefline.store.models import Artifact
from prefline.store.snapshots import get_snapshot, snapshot_examples
from prefline.train.reward_data import FeedbackCounts, count_kinds, file_splits

RESULT_FILE = "reward_eval.json"


@dataclass(frozen=True)
class RewardEvalResult(StageResult):
    """An evaluation of one reward model on one data source."""

    artifact_kind: ClassVar[str] = "evaluation"
    model: str
    split: str
    """The split evaluated: test, val or all."""
    metrics: RewardEvalMetrics
    counts: FeedbackCounts
    """Records of the evaluated split by kind, used or ignored, and why."""
    inputs: tuple[Ref, ...]
    """The reward model (its artifact id when registered, else its path) and the snapshot or
    data file; with compare, the global reward model last."""
    snapshot_hash: str
    """Content hash of the evaluated data (the snapshot's, or the file's SHA-256)."""
    path: Path | None = None
    """This result as JSON in the run folder (None without a run folder)."""
    report: str | None = None
    reliability: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """Reliability bins of the calibrated pair probabilities (confidence, accuracy, count)."""
    data: str = ""
    """The evaluated data as the user named it: a snapshot (id, name or hash prefix) or a
    file path."""
    segments: dict[str, Any] | None = None
    """Accuracy per segment value for this model (and its fallback, and the compared global
    model), k-anonymous (:mod:`prefline.evaluate.reward_segments`); None without a key."""

    def to_json(self) -> dict[str, Any]:
        """The metrics at the top level (``accuracy``, ``n_pairs``, ...), then the rest."""
        out = super().to_json()
        return {**out.pop("metrics"), **out}


def run(cfg: RewardEvalConfig, ctx: Context) -> RewardEvalResult:
    """Evaluate ``cfg.model`` on the chosen split; write the JSON (and report) if asked."""
    scorer = place_reward_model(load_reward_model(cfg.model), ctx.torch_device)
    split = cfg.split if cfg.split != "auto" else ("test" if cfg.snapshot else "all")
    examples, source, source_hash = _examples(cfg, split, scorer.card, ctx.db)
    pairs: list[PreferencePair] = []
    for ex in examples:
        if isinstance(ex, PreferencePair):
            pairs.append(ex)
        elif isinstance(ex, RankingExample):
            pairs.extend(ranking_pairs(ex))
    if not pairs:
        raise PreflineError(f"the {split} split holds no preference pairs or rankings to "
                            "evaluate on", field="split")
    ratings = [ex for ex in examples if isinstance(ex, RatingExample)]
    metrics, plots = evaluate_reward(scorer, pairs, ratings, cfg.probes, bench=cfg.rewardbench)
    path = ctx.run_dir / RESULT_FILE if ctx.run_dir is not None else None
    refs: tuple[Ref, ...] = (_model_ref(ctx, cfg.model), source)
    if cfg.compare is not None:
        refs = (*refs, _model_ref(ctx, cfg.compare))  # the global model it is compared with
    result = RewardEvalResult(cfg.model, split, metrics, count_kinds(examples), refs,
                              source_hash, path, cfg.report, list(plots.get("reliability", [])),
                              str(cfg.snapshot if cfg.snapshot is not None else cfg.data),
                              _segments(cfg, scorer, pairs, ctx))
    if path is not None:
        ctx.require_run_dir()
        path.write_text(json.dumps(result.to_json(), indent=2, sort_keys=True))
    if cfg.report is not None:
        write_report(result.to_json(), plots, cfg.report,
                     title=f"Reward model {Path(cfg.model).name}")
    if cfg.report_to != "none":
        log_run(cfg.report_to, ctx.require_run_dir(), dataclasses.asdict(cfg),
                dataclasses.asdict(metrics), {"result": path, "report": cfg.report})
    return result


def _segments(cfg: RewardEvalConfig, scorer: Scorer, pairs: list[PreferencePair],
              ctx: Context) -> dict[str, Any] | None:
    """The per-segment table, when there is a key (given, or the model's own)."""
    key = cfg.segment_key or personal_key(scorer)
    if key is None:
        return None
    compare = (place_reward_model(load_reward_model(cfg.compare), ctx.torch_device)
               if cfg.compare is not None else None)
    return segment_table(scorer, pairs, key, min_group_size=cfg.min_group_size,
                         compare=compare)


def evaluate_heldout(model: Path, *, snapshot: str | None, data: str | None, ctx: Context,
                     ) -> tuple[RewardEvalConfig, RewardEvalResult | None, str | None]:
    """``eval reward`` on a freshly trained model's held-out test split, as ``train reward``
    and the demo run it: (its config, the result, or None and the reason there is none —
    e.g. a test split holding only ratings has nothing to rank)."""
    cfg = RewardEvalConfig(model=str(model), snapshot=snapshot, data=data, split="test",
                           probes=0)
    try:
        return cfg, run(cfg, ctx), None
    except PreflineError as exc:
        if exc.field != "split":
            raise
        return cfg, None, exc.message


def _examples(cfg: RewardEvalConfig, split: str, card: dict[str, Any],
              db: str) -> tuple[list[Any], Ref, str]:
    """(examples of ``split``, the source's Ref, the source's content hash)."""
    trained = card.get("config") or {}
    seed = int((trained.get("train") or {}).get("seed", 0))
    val_fraction = float(trained.get("val_fraction", 0.1))
    if cfg.snapshot is not None:
        snap = get_snapshot(cfg.snapshot, db)
        part = "train" if split == "val" else split
        examples: list[Any] = list(snapshot_examples(snap.id, part, db))
        ref, digest = Ref("snapshot", snapshot_id=int(snap.id)), snap.content_hash
    else:
        data = str(cfg.data)
        examples = load_rewardbench(data) if cfg.rewardbench else load_examples(data)
        digest = file_sha256(Path(data))
        ref = Ref("data", ref=digest)
        if split != "all":
            train, test = file_splits(examples, float(trained.get("test_fraction", 0.1)), seed)
            examples = test if split == "test" else train
    if split == "val":
        examples = carve(examples, val_fraction, seed)[1]
    if not examples:
        raise PreflineError(f"no examples fall in the {split} split", field="split")
    return examples, ref, digest


def _model_ref(ctx: Context, model: str) -> Ref:
    """The registered reward model at ``model`` (its latest record), else the path itself."""
    where = str(Path(model).resolve())
    with ctx.store.session() as s:
        found = s.scalars(select(Artifact.id).where(Artifact.path == where,
                                                    Artifact.kind == "reward_model")
                          .order_by(Artifact.id.desc()).limit(1)).first()
    return Ref("reward_model", artifact_id=int(found)) if found is not None else \
        Ref("reward_model", ref=where)

