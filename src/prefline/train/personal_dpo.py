"""Personalised policies: ``run(cfg: PersonalDPOConfig, ctx) -> PersonalDPOResult``.

One LoRA adapter per segment value of ``segment_key``, trained with DPO on that segment's
pairs, and a global adapter trained on all pairs, over one base model. A segment with fewer
than ``min_pairs`` training pairs gets no adapter of its own: the global one serves it, and
the manifest says why. Each adapter is a plain DPO run (:func:`prefline.train.dpo.fit_policy`,
the body of ``prefline train dpo`` after reading the data), so the data is read and split
once, by prompt, and every segment keeps the held-out prompts the snapshot (or file split)
gave it. The folder layout and the manifest are :mod:`prefline.train.personal_manifest`'s.
The caller records the result (kind ``policy``: ``prefline serve`` routes on the segment).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from prefline.base.distributed import rank
from prefline.base.hashing import content_hash
from prefline.base.progress import Reporter, StepProgress
from prefline.base.stage import Ref, StageResult
from prefline.models.embedded import DEFAULT_POLICY
from prefline.models.hub import load_causal_lm
from prefline.store.context import Context
from prefline.train.dpo import DPOResult, fit_policy
from prefline.train.personal_config import PersonalDPOConfig
from prefline.train.personal_manifest import FORMAT, GLOBAL, MANIFEST, adapter_name
from prefline.train.policy_data import FeedbackUse, PolicyData, load_policy_data, picked_data

__all__ = ["PersonalDPOConfig", "PersonalDPOResult", "partition", "run", "segment_of"]


@dataclass
class PersonalDPOResult(StageResult):
    """A personal policy folder: the global adapter, the segments' adapters, the manifest."""

    artifact_kind: ClassVar[str] = "policy"

    path: Path
    """The folder holding ``manifest.json`` (what ``prefline serve`` loads)."""
    segment_key: str
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    """``global`` and ``segments`` (value → ``pairs``, ``adapter`` or ``fallback``, and a
    trained adapter's ``heldout``/``val`` implicit-reward metrics); only segments with at
    least min_group_size pairs are named."""
    inputs: tuple[Ref, ...]
    snapshot_hash: str
    notes: list[str] = field(default_factory=list)
    runs: dict[str, DPOResult] = field(default_factory=dict, repr=False, compare=False)
    """Each adapter's DPO result by adapter name (``global``, ``style=concise``...)."""

    json_omit: ClassVar[tuple[str, ...]] = ("runs",)


class _Labelled(Reporter):
    """The run's reporter with the adapter's name in front of every bar, so each
    segment's progress bars say whose they are."""

    def __init__(self, inner: Reporter, label: str) -> None:
        self.enabled = inner.enabled
        self.label = label

    def bar(self, total: int | None, description: str, start: int = 0,
            transient: bool = False) -> StepProgress:
        return super().bar(total, f"[{self.label}] {description}", start, transient)

    def cached(self, description: str, detail: str = "") -> None:
        super().cached(f"[{self.label}] {description}", detail)


def segment_of(example: Any, key: str) -> str | None:
    """The example's value of segment attribute ``key`` (None when it has none)."""
    value = (getattr(example, "segment", None) or {}).get(key)
    return str(value) if value not in (None, "") else None


def partition(data: PolicyData, key: str) -> dict[str, PolicyData]:
    """``data`` split by the value of ``segment[key]``, each split kept (examples without
    the key are left out: they train only the global adapter)."""
    groups: dict[str, dict[str, list[Any]]] = {}
    for split in ("train", "val", "heldout"):
        for example in getattr(data, split):
            value = segment_of(example, key)
            if value is not None:
                groups.setdefault(value, {"train": [], "val": [], "heldout": []})[split].append(
                    example)
    return {value: picked_data(s["train"], FeedbackUse({"pairs": len(s["train"]) + len(s["val"])}),
                               [data.source_hash, key, value], val=s["val"],
                               heldout=s["heldout"], source=data.source)
            for value, s in groups.items()}


def _slug(value: str) -> str:
    """A folder name for a segment value: safe characters kept; anything else, or a long
    value, gets a hash suffix so two values never share a folder."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:40].strip(".") or "segment"
    return safe if safe == value else f"{safe}-{content_hash(value)[:8]}"


def _plan(cfg: PersonalDPOConfig, parts: dict[str, PolicyData],
          ) -> tuple[list[str], dict[str, dict[str, Any]], int]:
    """``(segments to train, manifest entries, suppressed count)``: a segment trains when it
    has min_pairs pairs; one below min_group_size is not named at all (k-anonymity)."""
    train: list[str] = []
    entries: dict[str, dict[str, Any]] = {}
    suppressed = 0
    for value in sorted(parts):
        part = parts[value]
        n = len(part.train) + len(part.val)
        if n >= cfg.min_pairs and part.train:
            train.append(value)
            entries[value] = {"pairs": n}
        elif n >= cfg.min_group_size:
            entries[value] = {"pairs": n, "adapter": None,
                              "fallback": f"{n} training pairs < min_pairs {cfg.min_pairs}: "
                                          "served by the global adapter"}
        else:
            suppressed += 1
    return train, entries, suppressed


def _fit(cfg: PersonalDPOConfig, ctx: Context, data: PolicyData, folder: Path, label: str,
         base_model: str) -> DPOResult:
    """One adapter: a fresh copy of the base, DPO on ``data``, exported under ``folder``."""
    sub = dataclasses.replace(ctx, run_dir=folder, progress=_Labelled(ctx.progress, label))
    lm, tok = load_causal_lm(cfg.dpo.model)
    result = fit_policy(cfg.dpo, sub, data, lm, tok, base_model=base_model)
    result.policy = None  # one adapter in memory at a time
    return result


def _measured(result: DPOResult) -> dict[str, Any]:
    return {k: result.metrics.get(k) for k in ("val", "heldout")}


def run(cfg: PersonalDPOConfig, ctx: Context) -> PersonalDPOResult:
    """Read and split the data once, train the global adapter and each large enough
    segment's, write the manifest."""
    _ = ctx.torch_device  # a device this machine lacks is refused before anything loads
    d = cfg.dpo
    data = load_policy_data(snapshot=d.snapshot, data=d.data, db=ctx.db, kto=False,
                            val_fraction=d.val_fraction, test_fraction=d.test_fraction,
                            seed=d.train.seed, pairs=d.pairs)
    out = ctx.require_run_dir()
    base_model = d.model or f"embedded:{DEFAULT_POLICY}"
    parts = partition(data, cfg.segment_key)
    train, entries, suppressed = _plan(cfg, parts)
    runs = {GLOBAL: _fit(cfg, ctx, data, out / GLOBAL, GLOBAL, base_model)}
    for value in train:
        name = adapter_name(cfg.segment_key, value)
        runs[name] = _fit(cfg, ctx, parts[value], out / "segments" / _slug(value), name,
                          base_model)
        entries[value]["adapter"] = str(Path(runs[name].path).relative_to(out))
    n_all = len(data.train) + len(data.val)
    manifest = {
        "format": FORMAT, "segment_key": cfg.segment_key, "min_pairs": cfg.min_pairs,
        "min_group_size": cfg.min_group_size, "base_model": base_model,
        "global": {"adapter": str(Path(runs[GLOBAL].path).relative_to(out)), "pairs": n_all},
        "segments": entries, "suppressed": suppressed,
        "without_key": n_all - sum(len(p.train) + len(p.val) for p in parts.values())}
    metrics = {"global": {"pairs": n_all, **_measured(runs[GLOBAL])},
               "segments": {v: {**e, **(_measured(runs[adapter_name(cfg.segment_key, v)])
                                        if e.get("adapter") else {})}
                            for v, e in entries.items()}}
    notes = [f"{suppressed} segment(s) with fewer than {cfg.min_group_size} pairs not named "
             "(served by the global adapter)"] if suppressed else []
    result = PersonalDPOResult(
        path=out, segment_key=cfg.segment_key, manifest=manifest, metrics=metrics,
        inputs=(data.source, Ref("base_model", ref=base_model)),
        snapshot_hash=data.source_hash, notes=notes, runs=runs)
    if rank() == 0:
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        (out / "summary.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
    return result
