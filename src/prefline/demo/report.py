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
    ROLE_COLOURS,
    image_sources,
    page,
    pct,
    policy_section,
)

SUMMARY_KEYS = ("judge", "judge_role", "judge_win_rate", "judge_win_rate_ci", "matrix",
                "proxy_win_rate", "kl", "reward_model_accuracy", "annotator", "policy_data",
                "overoptimisation", "stages_seconds",
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


KL_NOTE = ("best-of-N's KL is the bound log N − (N−1)/N (an upper bound on the true KL); the "
           "DPO policy's is its measured KL of the sampling distributions")


def fig_overopt(points: list[dict[str, Any]]) -> bytes:
    """Win rate over a reference sample against KL, per judge (coloured by role): best-of-N
    under the proxy as a line (KL: its bound), the DPO policy as a star (KL: measured)."""
    fig, ax = new_figure(6.0, 3.8)
    bon = [p for p in points if p["n"] is not None]
    for k, row in enumerate(points[0]["matrix"] if points else []):
        colour = ROLE_COLOURS.get(row["role"], "#7fa7d4")
        label = f"{row['judge'][:16]} ({role_name(row['role'])})"
        ax.plot([p["kl"] for p in bon], [p["matrix"][k]["win_rate"] for p in bon], "o-",
                color=colour, label=f"best-of-N, {label}")
        for p in points:
            if p["n"] is None and p["kl"] is not None and k < len(p["matrix"]):
                ax.plot([p["kl"]], [p["matrix"][k]["win_rate"]], "*", ms=13, color=colour,
                        markeredgecolor="black", label=f"DPO policy, {label}")
    for p in bon:
        ax.annotate(f"N={p['n']}", (p["kl"], 0.02), fontsize=7, ha="center")
    ax.axhline(0.5, color="grey", lw=1, ls="--")
    ax.set_ylim(0, 1)
    ax.set_xlabel("KL(policy ‖ reference), nats per response")
    ax.set_ylabel("win rate over a reference sample")
    ax.set_title("over-optimisation: gold, held-out and proxy against KL", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", ncol=2)
    return png_bytes(fig)


def role_name(role: str) -> str:
    """The demo's name for a matrix role: the labelling judge is the annotator ("gold")."""
    return {"labelling": "labelling, gold annotator"}.get(role, role)


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
    label, bon = stages["label"].outputs, stages["bon"].outputs
    return {
        "annotator": {k: label.get(k) for k in ("judge", "pairs_available", "budget", "pairs",
                                                 "decisive", "ties", "noise", "flipped")},
        "policy_data": {"source": "reward-model best-vs-worst pair per train prompt (best-of-N)",
                        "scorer": bon["scorer"], "prompts": bon["prompts"],
                        "pairs": bon["pairs"]},
        "overoptimisation": {"points": stages["overopt"].outputs["points"], "kl_note": KL_NOTE},
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
    rm, dpo, ann = stages["reward"].outputs, stages["dpo"].outputs, summary["annotator"]
    steps = [f"annotator {ann['judge']}: {ann['pairs']} of {ann['pairs_available']} pairs "
             f"labelled, {ann['flipped']} of {ann['decisive']} decisive labels flipped",
             f"snapshot {summary['snapshot_hash'][:12]} ({stages['snapshot'].outputs['items']})",
             f"reward model #{rm['artifact_id']}",
             f"{summary['policy_data']['pairs']} reward-model best-vs-worst pairs",
             f"policy #{dpo['artifact_id']} (DPO + LoRA, {dpo['pairs']} pairs)",
             f"evaluation #{stages['register'].outputs['evaluation_id']}"]
    chain = " → ".join(f"<span class='node'>{e(s)}</span>" for s in steps)
    rows = "".join(f"<tr><td>{a['id']}</td><td>{e(str(a['kind']))}</td><td>{e(str(a['name']))}</td>"
                   f"<td><code>{e(str(a['snapshot_hash'])[:12])}</code></td><td>{e(str(a['code_version']))}</td></tr>"
                   for a in stages["register"].outputs["lineage"])
    return (f"<p>{chain}</p><table><tr><th>artifact</th><th>kind</th><th>name</th><th>snapshot</th>"
            f"<th>code</th></tr>{rows}</table><p class='note'>A lineage graph: the evaluation's "
            "inputs are the policy, the reference model, the judge and the reward model (the "
            "proxy); the reward model's inputs are the snapshot of the annotator's labels and its "
            "base model; the policy's are the reward model's pairs (a data file), the reward "
            "model and the base model. The policy never saw an annotator label.</p>")


def _overopt_html(summary: dict[str, Any], img: dict[str, str]) -> str:
    e, over = html.escape, summary["overoptimisation"]
    points = over["points"]
    head = "".join(f"<th>{e(r['judge'][:20])} ({e(role_name(r['role']))})</th>"
                   for r in points[0]["matrix"])
    rows = "".join(
        f"<tr><td>{e(p['policy'])}</td><td>{p['kl']:.3f} ({e(p['kl_kind'])})</td>"
        + "".join(f"<td>{pct(r['win_rate'])} [{pct(r['ci'][0])}, {pct(r['ci'][1])}]</td>"
                  for r in p["matrix"]) + "</tr>"
        for p in points if p["kl"] is not None)
    return (f"<figure><img src='{img['overopt']}' alt='over-optimisation'></figure>"
            f"<table><tr><th>policy</th><th>KL, nats</th>{head}</tr>{rows}</table>"
            f"<p class='note'>Best-of-N: the proxy reward model picks the best of N reference "
            f"samples per evaluation prompt; each pick is judged against another reference "
            f"sample, by the same judges as the DPO policy. {e(over['kl_note'])}. A proxy that "
            "keeps rising while the gold annotator and the held-out judge do not is the "
            "policy (or the picking) gaming the proxy.</p>")


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
    figures["overopt"] = fig_overopt(summary["overoptimisation"]["points"])
    figures["stage_times"] = fig_stage_times(summary["stages_seconds"])
    img = image_sources(figures, out / "img")
    quick = ("<p class='verdict miss'>Quick mode: tiny random models and a handful of prompts. "
             "This run only checks that every stage works; its numbers mean nothing.</p>"
             if cfg.quick else "")
    body = "\n".join([
        quick, "<h2>Does the new policy beat the reference? (held-out prompts, "
        f"{html.escape(str(summary['eval_split']))} split; headline judge "
        f"<code>{html.escape(str(summary['judge']))}</code>, held out)</h2>",
        policy_section(result, img),
        "<h2>Over-optimisation: gold and proxy against KL</h2>", _overopt_html(summary, img),
        "<h2>Lineage</h2>", _lineage_html(summary, stages),
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
