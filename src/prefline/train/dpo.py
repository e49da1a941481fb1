"""DPO-family policy training: ``train_dpo(pairs, cfg, train_cfg) -> DPOResult``.

The flow, in order: load the policy (any causal LM; the embedded SmolLM2 by default),
optionally add LoRA adapters; hold out a prompt-grouped slice of the pairs; tokenise and
truncate; get reference log-probs from the disk cache or compute them once (with the
initial policy, which *is* the reference, or the base with adapters disabled under LoRA),
so no second model is ever held in memory; then run the shared engine with
:class:`DPOTask`, which packs prefix-shared pairs and calls a loss from
``prefline.losses.policy``. The result is exported (merged weights or a peft adapter) and
registered with its lineage.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prefline.base.distributed import barrier, init_distributed
from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.base.precision import autocast_context, resolve_precision
from prefline.base.progress import Reporter
from prefline.formats.examples import PreferencePair
from prefline.losses.policy import LOSSES, compute, nll_term
from prefline.train.engine import TrainConfig, Trainer
from prefline.train.logprobs import SequenceLogps
from prefline.train.packing import EncodedPair, EncodeReport, PackedBatch, encode_pairs, pack
from prefline.train.ref_cache import reference_logps, weights_fingerprint

_REF_BATCH = 16  # pairs per no-grad reference batch
_LOSS_OPTIONS = ("label_smoothing", "gamma", "desirable_weight", "undesirable_weight")


@dataclass(frozen=True)
class DPOConfig:
    """What to optimise; the engine's TrainConfig says how."""

    model: str | None = None
    """Hub id or local folder; None = the embedded SmolLM2-135M-Instruct."""
    loss: str = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.1
    """ε for cdpo / robust."""
    gamma: float = 0.5
    """SimPO target margin."""
    rpo_alpha: float = 0.0
    """Weight of RPO's length-normalised NLL on the chosen response (0 = off)."""
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    max_length: int = 512
    """Tokens of prompt + the longer response; prompts are cut from the left first."""
    row_tokens: int = 0
    """Packed row length (0 = the longest pair in each micro-batch)."""
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    eval_fraction: float = 0.1
    """Share of prompts held out for the implicit-reward accuracy (grouped by prompt)."""
    export: str = "auto"
    """auto (full: merged weights, LoRA: adapter) | merged | adapter."""
    logits_chunk: int = 512

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise PreflineError(f"unknown loss {self.loss!r}; expected one of {', '.join(LOSSES)}",
                                field="loss")
        if self.beta <= 0:
            raise PreflineError("beta must be positive", field="beta")
        if not 0 <= self.eval_fraction < 1:
            raise PreflineError("eval_fraction must be in [0, 1)", field="eval_fraction")
        if self.export not in ("auto", "merged", "adapter"):
            raise PreflineError("export must be auto, merged or adapter", field="export")
        if self.export == "adapter" and not self.lora:
            raise PreflineError("export=adapter needs --lora", field="export")
        if self.rpo_alpha and self.loss == "kto":
            raise PreflineError("rpo_alpha applies to paired losses, not kto", field="rpo_alpha")

    def loss_options(self) -> dict[str, Any]:
        """The options the chosen loss takes (e.g. gamma for simpo)."""
        accepted = inspect.signature(LOSSES[self.loss]).parameters
        return {k: getattr(self, k) for k in _LOSS_OPTIONS if k in accepted}


class DPOTask:
    """Engine Task: packs EncodedPairs (with cached reference log-probs) and sums the loss."""

    def __init__(self, cfg: DPOConfig, pad_id: int = 0) -> None:
        self.cfg, self.pad_id = cfg, pad_id

    def collate(self, examples: Sequence[EncodedPair]) -> PackedBatch:
        return pack(examples, self.cfg.row_tokens, self.pad_id)

    def count(self, batch: PackedBatch) -> int:
        return batch.n

    def loss(self, model: nn.Module, batch: PackedBatch) -> tuple[Tensor, float, dict[str, float]]:
        logps = model(batch)
        pc, pr = logps[0::2], logps[1::2]
        rc, rr = batch.ref[:, 0], batch.ref[:, 1]
        lc, lr = batch.lengths[0::2], batch.lengths[1::2]
        # Sequence-level log-ratio on the data: a cheap estimate of how far the policy moved
        # (KTO uses it, detached, as its reference point z0).
        drift = ((pc - rc) + (pr - rr)).detach() / 2
        losses, rew_c, rew_r = compute(self.cfg.loss, pc, pr, rc, rr, self.cfg.beta,
                                       chosen_lengths=lc, rejected_lengths=lr,
                                       kl=drift.mean(), **self.cfg.loss_options())
        if self.cfg.rpo_alpha:
            losses = losses + self.cfg.rpo_alpha * nll_term(pc, lc)
        metrics = {
            "accuracy": float((rew_c > rew_r).sum()), "margin": float((rew_c - rew_r).sum()),
            "reward_chosen": float(rew_c.sum()), "reward_rejected": float(rew_r.sum()),
            "logps_chosen": float(pc.detach().sum()), "logps_rejected": float(pr.detach().sum()),
            "kl": float(drift.sum()), "tokens": float(batch.tokens),
            "response_tokens": float(batch.lengths.sum()),
        }
        return losses.sum(), float(batch.n), metrics


def split_heldout(pairs: Sequence[PreferencePair], fraction: float,
                  ) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held-out); a prompt's pairs all land on the same side (no prompt leakage)."""
    train: list[PreferencePair] = []
    held: list[PreferencePair] = []
    for p in pairs:
        key = p.prompt_key or content_hash(p.prompt)
        bucket = int(content_hash("heldout:" + key)[:8], 16) / 0xFFFFFFFF
        (held if bucket < fraction else train).append(p)
    if not train:
        raise PreflineError("every pair was held out; lower eval_fraction", field="eval_fraction")
    return train, held


def pair_logps(logps_fn: nn.Module, pairs: Sequence[EncodedPair], batch_pairs: int = 16,
               pad_id: int = 0) -> Tensor:
    """``(n, 2)`` summed (chosen, rejected) log-probs, no grad, in the given order."""
    out = []
    with torch.no_grad():
        for s in range(0, len(pairs), batch_pairs):
            out.append(logps_fn(pack(pairs[s:s + batch_pairs], pad_id=pad_id)).view(-1, 2))
    return torch.cat(out).double()


def implicit_reward_metrics(logps: Tensor, pairs: Sequence[EncodedPair], beta: float,
                            ) -> dict[str, float]:
    """Held-out DPO metrics: accuracy of β·(Δ_chosen − Δ_rejected) > 0, mean margin."""
    ref = torch.tensor([p.ref for p in pairs], dtype=torch.float64)
    margin = beta * ((logps[:, 0] - ref[:, 0]) - (logps[:, 1] - ref[:, 1]))
    return {"accuracy": float((margin > 0).double().mean()), "margin": float(margin.mean()),
            "pairs": float(len(pairs))}


@dataclass
class DPOResult:
    out_dir: Path
    model_path: Path | None
    artifact_id: int | None
    history: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    report: EncodeReport
    ref_cache_hit: bool
    summary: dict[str, Any] = field(default_factory=dict)
    policy: Any = None
    """The trained model in memory (a PeftModel under LoRA, before any merge)."""


def _load_policy(cfg: DPOConfig, model: Any, tokenizer: Any) -> tuple[Any, Any]:
    if model is None:
        from prefline.models.hub import load_causal_lm

        model, tokenizer = load_causal_lm(cfg.model)
    if tokenizer is None:
        raise PreflineError("a model passed in needs its tokenizer too")
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules="all-linear", task_type="CAUSAL_LM"))
    return model, tokenizer


def _with_reference(logps_fn: SequenceLogps, cfg: DPOConfig, train_cfg: TrainConfig,
                    sets: list[list[EncodedPair]], pad_id: int,
                    progress: Reporter) -> tuple[list[list[EncodedPair]], bool]:
    """Fill ``ref`` for each list of pairs; rank 0 computes on a cache miss, others wait."""
    lm: Any = logps_fn.lm
    fingerprint = weights_fingerprint(lm, skip=lambda n: "lora_" in n)
    dtype = resolve_precision(train_cfg.precision)
    tag = "bf16" if dtype is not None else "fp32"
    rank, _ = init_distributed()
    out, hits = [], []
    for pairs in sets:
        if not pairs:
            out.append(pairs)
            continue
        if rank != 0:
            barrier()  # wait for rank 0 to fill the cache
        lm.eval()
        batches = -(-len(pairs) // _REF_BATCH)
        reporter = progress if rank == 0 else Reporter(False)
        with lm.disable_adapter() if cfg.lora else nullcontext(), reporter.bar(
                batches, "reference log-probs") as bar:
            filled, hit = reference_logps(logps_fn, pairs, fingerprint, tag, pad_id=pad_id,
                                          batch_pairs=_REF_BATCH, autocast=autocast_context(dtype),
                                          progress=lambda: bar.update({}))
        if rank == 0:
            barrier()
        out.append(filled)
        hits.append(hit)
    return out, all(hits)


def export_policy(lm: Any, tokenizer: Any, out: Path, how: str) -> Path:
    """Save to ``out/model`` (merged, plain transformers) or ``out/adapter`` (peft)."""
    is_peft = hasattr(lm, "peft_config")
    if how == "auto":
        how = "adapter" if is_peft else "merged"
    target = out / ("adapter" if how == "adapter" else "model")
    if how == "merged" and is_peft:
        lm = lm.merge_and_unload()
    lm.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def train_dpo(pairs: Sequence[PreferencePair], cfg: DPOConfig, train_cfg: TrainConfig, *,
              run_dir: Path, progress: Reporter | None = None, model: Any = None, tokenizer: Any = None, db: str | None = None,
              register: bool = True, snapshot_hash: str | None = None,
              snapshot_id: int | None = None, parent_id: int | None = None) -> DPOResult:
    """Train, evaluate on held-out prompts, export and register. See the module docstring."""
    lm, tok = _load_policy(cfg, model, tokenizer)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    train_pairs, held_pairs = split_heldout(pairs, cfg.eval_fraction)
    train_enc, report = encode_pairs(train_pairs, tok, cfg.max_length)
    held_enc = encode_pairs(held_pairs, tok, cfg.max_length)[0] if held_pairs else []
    logps_fn = SequenceLogps(lm, chunk=cfg.logits_chunk)
    reporter = progress or Reporter(False)
    (train_enc, held_enc), hit = _with_reference(logps_fn, cfg, train_cfg,
                                                 [train_enc, held_enc], pad_id, reporter)

    def evaluate(module: nn.Module) -> dict[str, float]:
        return implicit_reward_metrics(pair_logps(module, held_enc, pad_id=pad_id), held_enc,
                                       cfg.beta)

    trainer = Trainer(logps_fn, DPOTask(cfg, pad_id), train_enc, train_cfg, run_dir=run_dir,
                      progress=reporter, evaluate=evaluate if held_enc else None)
    fit = trainer.fit()
    out = Path(run_dir)
    result = DPOResult(out, None, None, fit.history, fit.evals, report, hit, policy=lm)
    if trainer.rank != 0:
        return result
    result.model_path = export_policy(lm, tok, out, cfg.export)
    last = fit.history[-1] if fit.history else {}
    result.summary = {
        "steps": fit.steps, "train": {k: last[k] for k in ("loss", "accuracy", "margin", "kl")
                                      if k in last},
        "heldout": fit.evals[-1] if fit.evals else None, "ref_cache_hit": hit,
        "pairs": {"train": len(train_enc), "heldout": len(held_enc)},
        "truncated_prompts": report.truncated_prompts,
        "truncated_responses": report.truncated_responses, "notes": report.notes,
        "model": str(result.model_path),
    }
    if register:
        result.artifact_id = register_policy(result, cfg, train_cfg, db, snapshot_hash,
                                             snapshot_id, parent_id)
        result.summary["artifact_id"] = result.artifact_id
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2, default=str))
    return result


def register_policy(result: DPOResult, cfg: DPOConfig, train_cfg: TrainConfig, db: str | None,
                    snapshot_hash: str | None, snapshot_id: int | None,
                    parent_id: int | None) -> int:
    from prefline.registry import Ref, record

    assert result.model_path is not None
    metrics = {k: v for k, v in result.summary.items() if k in ("train", "heldout", "steps")}
    inputs = [Ref("snapshot", snapshot_id=snapshot_id) if snapshot_id is not None
              else Ref("data", ref=snapshot_hash)] if snapshot_id is not None or snapshot_hash else []
    inputs += [Ref("base_model", ref=cfg.model)] if cfg.model else []
    inputs += [Ref("previous_policy", artifact_id=parent_id)] if parent_id is not None else []
    return record(
        db, "policy", result.model_path, name=f"dpo-{cfg.loss}",
        config={"dpo": asdict(cfg), "train": asdict(train_cfg)}, snapshot_hash=snapshot_hash,
        metrics=metrics, inputs=inputs)
