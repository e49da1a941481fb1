"""Run every audit check on the store (or one snapshot) and collect one JSON-able result.

    result = run_audit("sqlite:///store.db", snapshot=None)
    result["metrics"]        # flat headline numbers that --fail-on rules read
    result["agreement"]      # per question type: raw agreement, alpha, kappa, consensus
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from prefline.audit import agreement, bias, cycles, duplicates
from prefline.audit.load import AuditData, load_audit_data
from prefline.audit.stats import not_defined
from prefline.audit.tables import LabelTable, all_tables
from prefline.base.errors import PreflineError

STAGES = ("load", "agreement", "bias", "cycles", "duplicates")


@dataclass(frozen=True)
class AuditConfig:
    """Thresholds of the checks; the defaults are what ``prefline audit`` uses."""

    kappa_min_overlap: int = 10
    """Annotator pairs sharing fewer items get no κ."""
    outlier_min_items: int = 20
    """Annotators with fewer items compared to consensus are never flagged."""
    fast_ms: float = 2000.0
    """Human labels faster than this (milliseconds) are suspicious."""
    fast_relative: float = 0.25
    """... as are labels faster than this fraction of the annotator's median time."""
    near_threshold: float = 0.8
    """Estimated Jaccard similarity of word 3-grams above which prompts are near duplicates."""


def _agreement(tables: list[LabelTable], data: AuditData, cfg: AuditConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    names, kinds = data.annotator_names, data.annotator_kinds
    per: dict[str, Any] = {}
    judges: dict[str, Any] = {}
    for table in tables:
        row = agreement.raw_and_alpha(table)
        if table.level == "nominal":
            row["kappa"] = agreement.kappa_pairs(table, names, min_overlap=cfg.kappa_min_overlap)
            row["annotators_vs_consensus"] = agreement.consensus(
                table, names, kinds, min_items=cfg.outlier_min_items)
            judges[table.question] = agreement.judge_vs_human(table, names, kinds)
        per[table.question] = row
    return per, judges


def _metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The flat headline numbers (or "not defined: ..." sentences) the rules compare."""
    agree = result["agreement"]
    primary = "pairwise" if "pairwise" in agree else next(iter(agree), None)
    first = agree.get(primary, {}) if primary else {}
    missing = not_defined("no labels that several annotators could agree on")
    kappa = first.get("kappa", {}).get("mean", not_defined("kappa needs categorical labels"))
    outliers = {r["annotator"] for q in agree.values() for r in q.get("annotators_vs_consensus", [])
                if r["outlier"]}
    dup = result["duplicates"]
    m: dict[str, Any] = {
        "position_bias": result["position_bias"]["share"],
        "length_bias": result["length_bias"]["longer_wins"]["share"],
        "chosen_longer": result["length_bias"]["chosen_longer"]["share"],
        "alpha": first.get("alpha", missing), "raw_agreement": first.get("raw_agreement", missing),
        "kappa": kappa if first else missing,
        "tie_rate": result["choices"]["tie"]["share"], "both_bad_rate": result["choices"]["both_bad"]["share"],
        "cycles": result["cycles"]["cycles"], "duplicates": dup["duplicates"],
        "exact_duplicates": dup["exact"]["extra_copies"], "near_duplicates": dup["near"]["pairs"],
        "opening_duplicates": dup["same_opening"]["extra_copies"],
        "leakage": result["leakage"]["leaked"], "opening_leakage": _opening_leakage(result["leakage"]), "fast_share": result["fast_annotations"]["share"],
        "fast_annotations": result["fast_annotations"]["count"], "outliers": len(outliers),
        "judge_agreement": result["judge_vs_human"].get(primary, {}).get(
            "agreement", not_defined("no item was labelled by both a judge and humans")),
    }
    for question, row in agree.items():
        m[f"alpha.{question}"] = row["alpha"]
    return m


def _opening_leakage(leak: dict[str, Any]) -> int | str:
    if not isinstance(leak["leaked"], int):
        return str(leak["leaked"])
    return sum(v["same_opening"] for v in leak.values() if isinstance(v, dict) and "same_opening" in v)


def _scope(data: AuditData, url: str) -> dict[str, Any]:
    kinds = data.kind_names()
    present = sorted({int(i) for i in data.annotator.tolist()})
    return {"db": url, "snapshot": data.snapshot_id, "feedback": data.n_events,
            "by_kind": {k: int((kinds == k).sum()) for k in sorted(set(kinds.tolist()))},
            "prompts": int(len(data.prompt_ids)), "annotators": len(present),
            "annotator_kinds": {k: sum(data.annotator_kinds[i] == k for i in present)
                                for k in sorted({data.annotator_kinds[i] for i in present})}}


def _existing_store(db: str | None) -> Engine:
    """The store's engine; an audit never creates a missing SQLite file as a side effect."""
    from prefline.store.db import normalise_url, open_store

    url = normalise_url(db)
    if url.startswith("sqlite") and ":memory:" not in url:
        path = Path(url.split("///", 1)[-1])
        if not path.exists():
            raise PreflineError(f"nothing to audit: there is no store at {path} "
                                "(create one with `prefline db upgrade` and import feedback)")
    return open_store(url)


def run_audit(db: str | Engine | None = None, snapshot: int | str | None = None,
              config: AuditConfig | None = None,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Audit the whole store, or one snapshot (id, name or content-hash prefix), and
    return the result dict.

    ``progress`` is called with each stage name in ``STAGES`` as it finishes. Raises
    PreflineError when there is no feedback to audit or the snapshot does not exist.
    """
    cfg = config or AuditConfig()
    engine = db if isinstance(db, Engine) else _existing_store(db)
    timings: dict[str, float] = {}
    tick = time.perf_counter()

    def done(stage: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        timings[stage] = round(now - tick, 3)
        tick = now
        if progress is not None:
            progress(stage)

    if snapshot is not None:  # an id, a name or a content-hash prefix, as everywhere else
        from prefline.store.snapshots import get_snapshot

        snapshot = int(get_snapshot(snapshot, engine.url.render_as_string(hide_password=False)).id)
    with engine.connect() as conn:
        data = load_audit_data(conn, snapshot)
    if data.n_events == 0:
        where = f"snapshot {snapshot} has" if snapshot is not None else "the store has"
        raise PreflineError(f"nothing to audit: {where} no feedback events "
                            "(add some with `prefline import` or the annotation UI)")
    done("load")
    result: dict[str, Any] = {"scope": _scope(data, engine.url.render_as_string(hide_password=True))}
    result["agreement"], result["judge_vs_human"] = _agreement(all_tables(data), data, cfg)
    done("agreement")
    result["position_bias"] = bias.position_bias(data)
    result["length_bias"] = bias.length_bias(data)
    result["choices"] = bias.choice_rates(data)
    result["labels"] = bias.label_distribution(data)
    result["fast_annotations"] = bias.fast_annotations(data, min_ms=cfg.fast_ms, relative=cfg.fast_relative)
    done("bias")
    result["cycles"] = cycles.intransitive_cycles(data)
    done("cycles")
    dups = duplicates.find_duplicates(data.prompt_ids, data.prompt_texts, openings=data.prompt_openings,
                                       threshold=cfg.near_threshold)
    result["duplicates"] = dups.summary
    result["leakage"] = duplicates.leakage(data.prompt_ids, data.prompt_texts, dups, data.splits)
    done("duplicates")
    result["metrics"] = _metrics(result)
    result["config"] = asdict(cfg)
    result["timings_s"] = timings
    return result
