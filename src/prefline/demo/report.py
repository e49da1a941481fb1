"""The demo's report: ``report/index.html`` with PNG figures beside it, and ``summary.json``.

The page leads with the verdict against the target (the held-out judge's win rate ≥ 60% with
the 95% CI's lower bound above 50%, on held-out prompts); when it is missed it says so in the
first line. The headline is never the labelling judge or the proxy reward model: both are in
the judge matrix, named as such. ``summary.json`` also records what makes the run
reproducible (:mod:`prefline.demo.reproduce`).
"""

from __future__ import annotations

import html
import json
from typing import Any

from prefline.base.plots import new_figure, png_bytes
from prefline.demo.cache import CachedStage
from prefline.demo.config import DemoConfig
from prefline.demo.pipeline import DemoResult
from prefline.demo.reproduce import provenance
from prefline.evaluate.policy_report import (
    POLICY_FIGURES,
    image_sources,
    page,
    pct,
    policy_section,
)

SUMMARY_KEYS = ("judge", "judge_role", "judge_win_rate", "judge_win_rate_ci", "matrix",
                "proxy_win_rate", "kl", "reward_model_accuracy", "stages_seconds",
                "code_version", "code_dirty", "config_hash", "seeds", "config")


def fig_calibration(bins: list[dict[str, Any]]) -> bytes:
    """Reliability diagram of the reward model's P(a ≻ b) on held-out pairs."""
    fig, ax = new_figure(4.2, 3.6)
    pts = [(b["confidence"], b["accuracy"], b["count"]) for b in bins if b["count"]]
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=[12 + 3 * p[2] ** 0.5 * 4 for p in pts],
                   color="#3b6ea8", label="held-out pairs (size = count)")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#3b6ea8", lw=1)
    ax.set_xlabel("predicted P(preferred)")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    return png_bytes(fig)


def fig_stage_times(seconds: dict[str, float]) -> bytes:
    fig, ax = new_figure(5.0, 3.0)
    ax.barh(list(seconds), list(seconds.values()), color="#7fa7d4")
    ax.invert_yaxis()
    ax.set_xlabel("seconds (this run; reused stages show their original time)")
    return png_bytes(fig)


def build_summary(cfg: DemoConfig, stages: dict[str, CachedStage]) -> dict[str, Any]:
    """The flat numbers a reader (or a test) checks first."""
    ev, rm = stages["evaluate"].outputs, stages["reward"].outputs
    held = rm.get("heldout") or {}
    train_m = rm.get("train_metrics") or {}
    snap, store = stages["snapshot"].outputs, stages["store"].outputs
    return {
        "judge": ev.get("judge"), "judge_role": ev.get("judge_role"),
        "judge_win_rate": ev["judge_win_rate"], "judge_win_rate_ci": ev["judge_win_rate_ci"],
        "matrix": ev.get("matrix"), "eval_split": ev.get("split"),
        "proxy_win_rate": ev["proxy_win_rate"], "kl": ev["kl"],
        "reward_model_accuracy": held.get("accuracy", train_m.get("test_accuracy")),
        "reward_model_accuracy_ci": held.get("accuracy_ci"), "reward_model_ece": held.get("ece"),
        "target_met": ev["target_met"], "eval_prompts": ev["prompts"], "quick": cfg.quick,
        "feedback": store["feedback_total"], "snapshot_hash": snap["hash"],
        "reward_model_artifact": rm["artifact_id"], "policy_artifact": stages["dpo"].outputs["artifact_id"],
        "stages_seconds": {n: round(s.seconds, 2) for n, s in stages.items()},
        "stages_cpu_seconds": {n: round(s.cpu_seconds, 2) for n, s in stages.items()},
        "stages_reused": sorted(n for n, s in stages.items() if s.reused),
        **provenance(cfg),
    }


def _lineage_html(summary: dict[str, Any], stages: dict[str, CachedStage]) -> str:
    e = html.escape
    rm, dpo = stages["reward"].outputs, stages["dpo"].outputs
    steps = [f"{summary['feedback']} judged feedback events",
             f"snapshot {summary['snapshot_hash'][:12]} ({stages['snapshot'].outputs['items']})",
             f"reward model #{rm['artifact_id']}", f"policy #{dpo['artifact_id']} (DPO + LoRA, "
             f"{dpo['pairs']} pairs)", f"evaluation #{stages['register'].outputs['evaluation_id']}"]
    chain = " → ".join(f"<span class='node'>{e(s)}</span>" for s in steps)
    rows = "".join(f"<tr><td>{a['id']}</td><td>{e(str(a['kind']))}</td><td>{e(str(a['name']))}</td>"
                   f"<td><code>{e(str(a['snapshot_hash'])[:12])}</code></td><td>{e(str(a['code_version']))}</td></tr>"
                   for a in stages["register"].outputs["lineage"])
    return (f"<p>{chain}</p><table><tr><th>artifact</th><th>kind</th><th>name</th><th>snapshot</th>"
            f"<th>code</th></tr>{rows}</table><p class='note'>A lineage graph: the evaluation's "
            "inputs are the policy, the reference model, the judge and the reward model (the "
            "proxy); the policy's and the reward model's inputs are the snapshot and their base "
            "models. The policy never saw the reward model.</p>")


def _audit_html(stages: dict[str, CachedStage]) -> str:
    m = stages["audit"].outputs["metrics"]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in m.items())
    return f"<table>{rows}</table><p><a href='../audit/audit.html'>full audit report</a></p>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def _reward_html(stages: dict[str, CachedStage], img: dict[str, str]) -> str:
    rm = stages["reward"].outputs
    held = rm.get("heldout") or {}
    acc, ci = held.get("accuracy"), held.get("accuracy_ci") or [None, None]
    return (f"<p>Held-out pairs (snapshot test split, {held.get('n_pairs', 0)} pairs): accuracy "
            f"{pct(acc)} [95% CI {pct(ci[0])}, {pct(ci[1])}], ECE {_fmt(held.get('ece'))}, "
            f"temperature {_fmt(rm.get('train_metrics', {}).get('temperature'))}.</p>"
            + (f"<figure><img src='{img['calibration']}' alt='calibration'>"
               "<figcaption>Reward-model calibration (held-out)</figcaption></figure>"
               if "calibration" in img else ""))


def _provenance_html(summary: dict[str, Any]) -> str:
    e = html.escape
    dirty = " (uncommitted changes: the commit alone does not reproduce it)" \
        if summary["code_dirty"] else ""
    return (f"<p>code <code>{e(summary['code_version'])}</code>{e(dirty)}, config hash "
            f"<code>{e(summary['config_hash'][:16])}</code>, seeds "
            f"{e(', '.join(f'{k} {v}' for k, v in summary['seeds'].items()))}. "
            "<code>prefline demo --reproduce summary.json --out DIR</code> reruns this "
            "configuration and lists what differs.</p>")


def write_report(cfg: DemoConfig, run: DemoResult) -> dict[str, Any]:
    """Write ``report/index.html`` (+ PNGs) and ``summary.json``; returns the summary."""
    stages, out = run.stages, run.out / "report"
    result = json.loads((run.out / "evaluate" / "eval.json").read_text())
    summary = build_summary(cfg, stages)
    figures = {name: fn(result) for name, fn in POLICY_FIGURES.items()}
    bins = (stages["reward"].outputs.get("heldout") or {}).get("reliability")
    if bins:
        figures["calibration"] = fig_calibration(bins)
    figures["stage_times"] = fig_stage_times(summary["stages_seconds"])
    img = image_sources(figures, out / "img")
    quick = ("<p class='verdict miss'>Quick mode: tiny random models and a handful of prompts. "
             "This run only checks that every stage works; its numbers mean nothing.</p>"
             if cfg.quick else "")
    body = "\n".join([
        quick, "<h2>Does the new policy beat the reference? (held-out prompts, "
        f"{html.escape(str(summary['eval_split']))} split; headline judge "
        f"<code>{html.escape(str(summary['judge']))}</code>, held out)</h2>",
        policy_section(result, img), "<h2>Lineage</h2>", _lineage_html(summary, stages),
        "<h2>Audit highlights</h2>", _audit_html(stages), "<h2>Reward model</h2>",
        _reward_html(stages, img), "<h2>Reproducibility</h2>", _provenance_html(summary),
        "<h2>Stage timings</h2>",
        f"<figure><img src='{img['stage_times']}' alt='stage times'></figure>",
    ])
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(page("prefline demo: the loop, end to end", body), encoding="utf-8")
    tmp = run.out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(run.out / "summary.json")
    return summary
