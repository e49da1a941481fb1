"""The audit stage: every data-quality check on the store (or one snapshot), one typed result.

    result = run(AuditConfig(snapshot="v1", fail_on=("position_bias>0.6",)), ctx)
    result.metrics           # flat headline numbers that the fail_on rules read
    result.agreement         # per question type: raw agreement, alpha, kappa, consensus
    result.failed            # True when a fail_on rule was breached
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from prefline.audit import agreement, bias, cycles, duplicates
from prefline.audit.checks import Rule, evaluate, parse_rules
from prefline.audit.load import AuditData, load_audit_data
from prefline.audit.report import write_report
from prefline.audit.stats import not_defined
from prefline.audit.tables import LabelTable, all_tables
from prefline.base.errors import PreflineError
from prefline.base.stage import StageResult
from prefline.store.context import Context
from prefline.store.db import normalise_url, open_store
from prefline.store.models import Snapshot
from prefline.store.snapshots import get_snapshot

STAGES = ("load", "agreement", "bias", "cycles", "duplicates")

@dataclass(frozen=True)
class AuditConfig:
    """What to audit, where the report goes, and the thresholds of the checks."""

    snapshot: str | None = None
    """Audit one snapshot (id, name or content-hash prefix) instead of the whole store."""
    report: Path | None = None
    """Write an HTML report with plots to this file (its folder must exist)."""
    fail_on: tuple[str, ...] = ()
    """Rules <metric><op><number>, comma-separated, e.g. 'position_bias>0.6,leakage>0'; a
    breached rule fails the audit (exit 1). Metrics: position_bias, length_bias,
    chosen_longer, alpha, raw_agreement, kappa, tie_rate, both_bad_rate, cycles, duplicates,
    exact_duplicates, near_duplicates, opening_duplicates, leakage, opening_leakage,
    fast_share, fast_annotations, outliers, judge_agreement, alpha.<question type>."""
    kappa_min_overlap: int = 10
    """Annotator pairs sharing fewer items get no Cohen's kappa."""
    outlier_min_items: int = 20
    """Annotators with fewer items compared to consensus are never flagged as outliers."""
    fast_ms: float = 2000.0
    """Human labels faster than this (milliseconds) are suspicious."""
    fast_relative: float = 0.25
    """... as are labels faster than this fraction of the annotator's median time."""
    near_threshold: float = 0.8
    """Estimated Jaccard similarity of word 3-grams above which prompts are near duplicates."""

    def __post_init__(self) -> None:
        for name in ("kappa_min_overlap", "outlier_min_items"):
            if getattr(self, name) < 1:
                raise PreflineError(f"expected an integer >= 1, got {getattr(self, name)}",
                                    field=name)
        if self.fast_ms < 0:
            raise PreflineError(f"expected milliseconds >= 0, got {self.fast_ms}", field="fast_ms")
        for name in ("fast_relative", "near_threshold"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise PreflineError(f"expected a number in (0, 1], got {getattr(self, name)}",
                                    field=name)
        self.rules()  # a malformed rule fails here, before any work

    def rules(self) -> list[Rule]:
        """The parsed ``fail_on`` rules (empty when none were given)."""
        return parse_rules(",".join(self.fail_on)) if self.fail_on else []


@dataclass(frozen=True)
class AuditScope:
    """What was audited."""

    db: str
    snapshot: int | None
    feedback: int
    by_kind: dict[str, int]
    prompts: int
    annotators: int
    annotator_kinds: dict[str, int]
    snapshot_name: str | None = None
    """The snapshot's name, when one was audited."""
    snapshot_hash: str | None = None
    """The snapshot's content hash, when one was audited."""
    judges: tuple[str, ...] = ()
    """The AI judges (``ai_judge`` annotators) whose labels are in the audited data."""


@dataclass(frozen=True)
class AuditChecks:
    """The ``fail_on`` rules against the metrics: breached, passed, and not evaluated (a
    metric that is "not defined" on this data cannot breach; the reason is kept)."""

    breached: tuple[str, ...]
    passed: tuple[str, ...]
    not_evaluated: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class AuditResult(StageResult):
    """Every check's section (open-ended JSON tables, as in the HTML report) plus the flat
    ``metrics`` the rules compare. A metric that cannot be computed is a sentence starting
    with "not defined:", never NaN."""

    scope: AuditScope
    agreement: dict[str, Any]
    """Per question type (pairwise, ranking, binary, rating:<criterion>)."""
    judge_vs_human: dict[str, Any]
    position_bias: dict[str, Any]
    length_bias: dict[str, Any]
    choices: dict[str, Any]
    labels: dict[str, Any]
    fast_annotations: dict[str, Any]
    cycles: dict[str, Any]
    duplicates: dict[str, Any]
    leakage: dict[str, Any]
    metrics: dict[str, Any]
    config: dict[str, Any]
    timings_s: dict[str, float]
    checks: AuditChecks | None = None
    report: Path | None = None

    @property
    def failed(self) -> bool:
        """True when a ``fail_on`` rule was breached."""
        return bool(self.checks and self.checks.breached)


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


def _scope(data: AuditData, url: str, snap: Snapshot | None = None) -> AuditScope:
    kinds = data.kind_names()
    present = sorted({int(i) for i in data.annotator.tolist()})
    return AuditScope(
        db=url, snapshot=data.snapshot_id, feedback=data.n_events,
        by_kind={k: int((kinds == k).sum()) for k in sorted(set(kinds.tolist()))},
        prompts=int(len(data.prompt_ids)), annotators=len(present),
        annotator_kinds={k: sum(data.annotator_kinds[i] == k for i in present)
                         for k in sorted({data.annotator_kinds[i] for i in present})},
        snapshot_name=snap.name if snap is not None else None,
        snapshot_hash=snap.content_hash if snap is not None else None,
        judges=tuple(sorted(data.annotator_names[i] for i in present
                            if data.annotator_kinds[i] == "ai_judge")))


def _existing_store(db: str) -> Engine:
    """The store's engine; an audit never creates a missing SQLite file as a side effect."""
    url = normalise_url(db)
    if url.startswith("sqlite") and ":memory:" not in url:
        path = Path(url.split("///", 1)[-1])
        if not path.exists():
            raise PreflineError(f"nothing to audit: there is no store at {path} "
                                "(create one with `prefline db upgrade` and import feedback)")
    return open_store(url)


def _load(cfg: AuditConfig, ctx: Context) -> tuple[AuditData, Engine, Snapshot | None]:
    """The data, the store's engine and the snapshot row (None for the whole store)."""
    engine = _existing_store(ctx.db)
    snapshot, snap = None, None
    if cfg.snapshot is not None:  # an id, a name or a content-hash prefix, as everywhere else
        snap = get_snapshot(cfg.snapshot, ctx.db)
        snapshot = int(snap.id)
    with engine.connect() as conn:
        data = load_audit_data(conn, snapshot)
    if data.n_events == 0:
        where = f"snapshot {cfg.snapshot} has" if snapshot is not None else "the store has"
        raise PreflineError(f"nothing to audit: {where} no feedback events "
                            "(add some with `prefline import` or the annotation UI)")
    return data, engine, snap


def run(cfg: AuditConfig, ctx: Context) -> AuditResult:
    """Audit the whole store, or ``cfg.snapshot``; write ``cfg.report`` when set.

    Raises PreflineError when there is no store or no feedback to audit, the snapshot does
    not exist, or the report's folder is missing (checked before any work).
    """
    if cfg.report is not None and not cfg.report.parent.exists():
        raise PreflineError(f"folder {cfg.report.parent} does not exist", path=str(cfg.report),
                            field="report")
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    with ctx.progress.bar(len(STAGES), "auditing") as bar:
        def done(stage: str) -> None:
            nonlocal tick
            now = time.perf_counter()
            timings[stage] = round(now - tick, 3)
            tick = now
            bar.update({})

        data, engine, snap = _load(cfg, ctx)
        done("load")
        sections: dict[str, Any] = {}
        sections["agreement"], sections["judge_vs_human"] = _agreement(all_tables(data), data, cfg)
        done("agreement")
        sections.update(
            position_bias=bias.position_bias(data), length_bias=bias.length_bias(data),
            choices=bias.choice_rates(data), labels=bias.label_distribution(data),
            fast_annotations=bias.fast_annotations(data, min_ms=cfg.fast_ms,
                                                   relative=cfg.fast_relative))
        done("bias")
        sections["cycles"] = cycles.intransitive_cycles(data)
        done("cycles")
        dups = duplicates.find_duplicates(data.prompt_ids, data.prompt_texts,
                                          openings=data.prompt_openings,
                                          threshold=cfg.near_threshold)
        sections["duplicates"] = dups.summary
        sections["leakage"] = duplicates.leakage(data.prompt_ids, data.prompt_texts, dups,
                                                 data.splits)
        done("duplicates")
    metrics = _metrics(sections)
    rules = cfg.rules()
    checks = AuditChecks(**{k: tuple(v) for k, v in evaluate(rules, metrics).items()}) \
        if rules else None
    result = AuditResult(scope=_scope(data, engine.url.render_as_string(hide_password=True), snap),
                         metrics=metrics, config=asdict(cfg), timings_s=timings, checks=checks,
                         report=cfg.report, **sections)
    if cfg.report is not None:
        write_report(result.to_json(), cfg.report, result.to_json()["checks"])
    return result
