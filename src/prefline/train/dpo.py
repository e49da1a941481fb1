"""Policy training from preferences: ``run(cfg: DPOConfig, ctx) -> DPOResult``.

The flow, in order: read the data and keep what the loss can use (pairs and rankings for the
DPO family; thumbs and split pairs for KTO — :mod:`prefline.train.policy_data`), with the
snapshot's test split as the held-out set and a ``val`` split carved from train; load the
policy (any causal LM; the embedded SmolLM2 by default) and optionally add LoRA adapters;
tokenise and truncate; get reference log-probs from the disk cache or compute them once (with
the initial policy, which *is* the reference, or the base with adapters disabled under
LoRA), so no second model is ever held in memory; run the shared engine with
:class:`~prefline.train.policy_tasks.DPOTask` or ``KTOTask``; export (merged weights or a
peft adapter) and measure the held-out set. The caller records the result in the registry.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from prefline.base import config
from prefline.base.distributed import barrier, init_distributed, place
from prefline.base.precision import autocast_context, resolve_precision
from prefline.base.progress import Reporter
from prefline.base.stage import Ref, StageResult
from prefline.base.tracking import log_paths
from prefline.models.embedded import DEFAULT_POLICY
from prefline.models.hub import load_causal_lm, write_policy_card
from prefline.store.context import Context
from prefline.train.engine import Trainer
from prefline.train.logprobs import SequenceLogps
from prefline.train.policy_batch import (
    EncodedPair,
    EncodedSingle,
    EncodeReport,
    encode_pairs,
    encode_unpaired,
)
from prefline.train.policy_config import DPOConfig
from prefline.train.policy_data import PolicyData, load_policy_data
from prefline.train.policy_tasks import (
    DPOTask,
    KTOTask,
    kto_metrics,
    pair_metrics,
    response_logps,
)
from prefline.train.ref_cache import cached_path, reference_logps, weights_fingerprint

__all__ = ["DPOConfig", "DPOResult", "fit_policy", "run"]

_REF_BATCH = 16  # examples per no-grad reference batch
Encoded = list[EncodedPair] | list[EncodedSingle]


@dataclass
class DPOResult(StageResult):
    """A trained policy: where it is, how it did, what it was trained on."""

    artifact_kind: ClassVar[str] = "policy"

    path: Path
    """The exported policy: ``<run>/model`` (weights) or ``<run>/adapter`` (peft)."""
    run_dir: Path
    loss: str
    steps: int
    metrics: dict[str, Any]
    """``heldout`` (the snapshot's test split), ``val`` (best or last val evaluation) and
    ``train`` (last step): implicit-reward accuracy and margin; KTO also z0 as ``kl``."""
    counts: dict[str, Any]
    """``used``/``ignored`` records per kind (with why), ``examples`` per split, and
    ``skipped`` examples per reason at tokenisation."""
    inputs: tuple[Ref, ...]
    snapshot_hash: str
    """The snapshot's content hash, or the data file's SHA-256."""
    ref_cache_hit: bool
    notes: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    policy: Any = field(default=None, repr=False, compare=False)
    """The trained model in memory (a PeftModel under LoRA, before any merge)."""

    json_omit: ClassVar[tuple[str, ...]] = ("policy", "history")
    """The in-memory model and the per-step history (in train_log.jsonl) stay out of JSON."""


def run(cfg: DPOConfig, ctx: Context) -> DPOResult:
    """Read the data (failing before any model loads), load the policy, train on
    ``ctx.device``, export."""
    _ = ctx.torch_device  # a device this machine lacks is refused before anything loads
    data = load_policy_data(snapshot=cfg.snapshot, data=cfg.data, db=ctx.db, kto=cfg.kto,
                            val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                            seed=cfg.train.seed, pairs=cfg.pairs)
    lm, tok = load_causal_lm(cfg.model)
    return fit_policy(cfg, ctx, data, lm, tok, base_model=cfg.model or f"embedded:{DEFAULT_POLICY}")


def _with_lora(cfg: DPOConfig, lm: Any) -> Any:
    if not cfg.lora:
        return lm
    from peft import LoraConfig, get_peft_model

    # The adapters' random init from the run's seed, so every process (and every rerun)
    # starts from the same adapters: FSDP shards each process's own copy.
    torch.manual_seed(cfg.train.seed)
    return get_peft_model(lm, LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules="all-linear", task_type="CAUSAL_LM"))


def _encode(cfg: DPOConfig, examples: list[Any], tok: Any, required: bool,
            ) -> tuple[Encoded, EncodeReport]:
    """Token ids for one split; a val or held-out split may come back empty."""
    if cfg.kto:
        return encode_unpaired(examples, tok, cfg.max_length, seed=cfg.train.seed,
                               required=required)
    return encode_pairs(examples, tok, cfg.max_length, required=required)


def _with_reference(logps_fn: SequenceLogps, cfg: DPOConfig, sets: list[Encoded], pad_id: int,
                    ctx: Context) -> tuple[list[Encoded], bool]:
    """Fill ``ref`` for each set; rank 0 computes on a cache miss, the others wait for it."""
    lm: Any = logps_fn.lm
    progress, device = ctx.progress, ctx.torch_device
    fingerprint = weights_fingerprint(lm, skip=lambda n: "lora_" in n)
    dtype = resolve_precision(cfg.train.precision, device)
    tag = {None: "fp32", torch.float16: "fp16"}.get(dtype, "bf16")
    rank, _ = init_distributed(str(device))
    out: list[Encoded] = []
    hits = []
    for name, items in zip(("train", "val", "held-out"), sets, strict=True):
        if not items:
            out.append(items)
            continue
        if rank != 0:
            barrier()  # wait for rank 0 to fill the cache
        lm.eval()
        batches = -(-len(items) // _REF_BATCH)
        reporter = progress if rank == 0 else Reporter(False)
        what = f"reference log-probs ({name})"
        if cached_path(items, fingerprint, tag).exists():  # say "cached", not a bar at 0/N
            reporter.cached(what, f"{len(items)} examples")
            reporter = Reporter(False)
        with lm.disable_adapter() if cfg.lora else nullcontext(), reporter.bar(batches, what) as bar:
            filled, hit = reference_logps(logps_fn, items, fingerprint, tag,  # type: ignore[type-var]
                                          pad_id=pad_id,
                                          batch_pairs=_REF_BATCH,
                                          autocast=autocast_context(dtype, device),
                                          progress=lambda: bar.update({}))
        if rank == 0:
            barrier()
        out.append(filled)  # type: ignore[arg-type]
        hits.append(hit)
    return out, all(hits)


def _metrics(cfg: DPOConfig, module: nn.Module, items: Encoded, pad_id: int) -> dict[str, float]:
    logps = response_logps(module, items, pad_id=pad_id)
    if cfg.kto:
        return kto_metrics(logps, items, cfg.beta)  # type: ignore[arg-type]
    return pair_metrics(logps, items, cfg.beta)  # type: ignore[arg-type]


def export_policy(lm: Any, tokenizer: Any, out: Path, how: str, write: bool = True,
                  base_model: str | None = None) -> Path:
    """Save to ``out/model`` (merged, plain transformers) or ``out/adapter`` (peft); with
    ``write=False`` only say where (ranks other than 0). ``base_model`` (as lineage names
    it) goes into the folder's ``model_card.json``; an adapter's config names an embedded
    base by its Hub id, not the cache folder (:func:`prefline.models.hub.write_policy_card`)."""
    is_peft = hasattr(lm, "peft_config")
    if how == "auto":
        how = "adapter" if is_peft else "merged"
    target = out / ("adapter" if how == "adapter" else "model")
    if not write:
        return target
    if how == "merged" and is_peft:
        lm = lm.merge_and_unload()
    lm.save_pretrained(target)
    tokenizer.save_pretrained(target)
    if base_model is not None:
        write_policy_card(target, base_model, adapter=how == "adapter")
    return target


def resume_fingerprint(cfg: DPOConfig, source_hash: str, base_model: str) -> dict[str, Any]:
    """What a resumed run must share with its checkpoint (the engine adds its own settings):
    the settings, less where the data is read from (its hash decides) and how the policy is
    exported (not how it trains)."""
    settings = {k: v for k, v in config.to_dict(cfg).items()
                if k not in ("snapshot", "data", "export")}
    return {"config": settings, "data": source_hash, "model": base_model}


def fit_policy(cfg: DPOConfig, ctx: Context, data: PolicyData, lm: Any, tokenizer: Any, *,
               base_model: str, reference: nn.Module | None = None) -> DPOResult:
    """Train ``lm`` on ``data`` (see the module docstring); ``base_model`` names it for
    lineage. ``reference``: a separate frozen reference model (online DPO keeps the initial
    policy); default: ``lm`` itself before training. Every rank trains; rank 0 exports and
    measures the held-out set."""
    out = ctx.require_run_dir()
    lm = _with_lora(cfg, lm)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_enc, report = _encode(cfg, data.train, tokenizer, required=True)
    val_enc, _ = _encode(cfg, data.val, tokenizer, required=False)
    held_enc, _ = _encode(cfg, data.heldout, tokenizer, required=False)
    logps_fn = place(SequenceLogps(lm, chunk=cfg.logits_chunk), ctx.torch_device)
    ref_fn = logps_fn if reference is None else place(
        SequenceLogps(reference, chunk=cfg.logits_chunk), ctx.torch_device)
    (train_enc, val_enc, held_enc), hit = _with_reference(
        ref_fn, cfg, [train_enc, val_enc, held_enc], pad_id, ctx)

    def evaluate(module: nn.Module) -> dict[str, float]:
        return _metrics(cfg, module, val_enc, pad_id)

    task = KTOTask(cfg, pad_id) if cfg.kto else DPOTask(cfg, pad_id)
    trainer = Trainer(logps_fn, task, train_enc, cfg.train, run_dir=out, progress=ctx.progress,
                      evaluate=evaluate if val_enc else None,
                      fingerprint=resume_fingerprint(cfg, data.source_hash, base_model),
                      device=ctx.torch_device)
    fit = trainer.fit()
    logps_fn = trainer.plain_model()  # type: ignore[assignment]  # under fsdp: gathered
    lm = logps_fn.lm
    path = export_policy(lm, tokenizer, out, cfg.export, write=trainer.rank == 0,
                         base_model=base_model)
    last = fit.history[-1] if fit.history else {}
    metrics: dict[str, Any] = {
        "steps": fit.steps,
        "train": {k: last[k] for k in ("loss", "accuracy", "margin", "kl") if k in last},
        "val": fit.best or (fit.evals[-1] if fit.evals else None), "heldout": None}
    if trainer.rank == 0 and held_enc:
        lm.eval()
        with autocast_context(trainer.dtype, ctx.torch_device):
            metrics["heldout"] = _metrics(cfg, logps_fn, held_enc, pad_id)
    counts = {"used": data.use.used, "ignored": data.use.ignored,
              "examples": {"train": len(train_enc), "val": len(val_enc), "heldout": len(held_enc)},
              "skipped": report.skipped}
    result = DPOResult(
        path=path, run_dir=out, loss=cfg.loss, steps=fit.steps, metrics=metrics, counts=counts,
        inputs=(data.source, Ref("base_model", ref=base_model)),
        snapshot_hash=data.source_hash, ref_cache_hit=hit, notes=report.notes,
        history=fit.history, evals=fit.evals, policy=lm)
    if trainer.rank == 0:
        (out / "summary.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
        log_paths(cfg.train.report_to, out, {"model": path, "summary": out / "summary.json"},
                  {"heldout": metrics["heldout"] or {}}, fit.steps)
    return result
