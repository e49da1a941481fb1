"""HTML report for ``prefline eval reward --report FILE``: metrics tables + embedded PNG plots.

Plots are rendered with matplotlib's Agg backend and embedded as base64 ``data:`` URIs, so the
report is one self-contained file that renders offline.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from prefline.base.plots import png_base64, use_agg


def _png(fig: Any) -> str:
    return "data:image/png;base64," + png_base64(fig, dpi=110)


def _reliability(plots: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    for key, label, color in (("reliability_uncalibrated", "T = 1", "tab:orange"),
                              ("reliability", "fitted T", "tab:blue")):
        bins = [b for b in plots[key] if b["count"]]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-",
                c=color, label=label)
    ax.set_xlabel("predicted P(chosen ≻ rejected)")
    ax.set_ylabel("observed frequency")
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def _scores(plots: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    c, r = np.asarray(plots["chosen"]), np.asarray(plots["rejected"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.2, 3.6))
    bins = np.linspace(min(c.min(), r.min()), max(c.max(), r.max()) + 1e-9, 30)
    a1.hist(c, bins=bins, alpha=0.6, label="chosen")
    a1.hist(r, bins=bins, alpha=0.6, label="rejected")
    a1.set_xlabel("normalised reward")
    a1.set_title("Reward distributions")
    a1.legend(fontsize=8)
    a2.hist(c - r, bins=30, color="tab:green")
    a2.axvline(0, c="k", lw=1)
    a2.set_xlabel("reward margin (chosen - rejected)")
    a2.set_title("Margins (right of 0 = correct)")
    return _png(fig)


def _length(plots: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    c, r = np.asarray(plots["chosen"]), np.asarray(plots["rejected"])
    dl = np.asarray(plots["len_chosen"]) - np.asarray(plots["len_rejected"])
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    ax.scatter(dl, c - r, s=8, alpha=0.5)
    ax.axhline(0, c="k", lw=1)
    ax.axvline(0, c="k", lw=1)
    ax.set_xlabel("length(chosen) - length(rejected) [chars]")
    ax.set_ylabel("reward margin")
    ax.set_title("Length bias probe")
    return _png(fig)


def _bars(values: dict[str, float], title: str, xlabel: str) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 0.45 * len(values) + 1.2))
    names = list(values)
    ax.barh(names, [values[n] for n in names], color="tab:blue")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return f"[{_fmt(v[0])}, {_fmt(v[1])}]"
    return html.escape(json.dumps(v) if isinstance(v, dict | list) else str(v))


def _table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def _inputs(result: dict[str, Any]) -> str:
    """What was evaluated on what: the reward model (artifact id when registered) and the
    data as named (snapshot id, content hash), from the result's ``inputs``."""
    refs = {r["role"]: r for r in result.get("inputs", [])}
    model, source = refs.get("reward_model", {}), refs.get("snapshot") or refs.get("data") or {}
    rows: dict[str, Any] = {
        "reward model": result.get("model"),
        "reward model artifact": f"#{model['artifact_id']}" if model.get("artifact_id")
        else "not registered",
        "data": result.get("data") or "",
        "snapshot": f"#{source['snapshot_id']}" if source.get("snapshot_id") else "none (a file)",
        "data content hash": result.get("snapshot_hash"),
        "split": result.get("split"),
    }
    return f"<h2>Inputs</h2>{_table(rows)}"


def _segments(table: dict[str, Any]) -> str:
    """The per-segment table (:mod:`prefline.evaluate.reward_segments`)."""
    models = table["models"]
    head = "".join(f"<th>{html.escape(m)}: accuracy [95% CI]</th><th>{html.escape(m)}: "
                   "expected accuracy</th>" for m in models)
    body = ""
    for row in table["rows"]:
        cells = "".join(f"<td>{_fmt(row[m]['accuracy'])} {_fmt(row[m]['accuracy_ci'])}</td>"
                        f"<td>{_fmt(row[m]['expected_accuracy'])}</td>" for m in models)
        body += f"<tr><td>{html.escape(row['segment'])}</td><td>{row['n']}</td>{cells}</tr>"
    note = (f"<p>Groups with fewer than {table['min_group_size']} pairs are not shown"
            + (f"; {html.escape(table['suppressed'])}" if table.get("suppressed") else "")
            + ".</p>")
    return (f"<h2>Per segment ({html.escape(table['key'])})</h2><table><tr><th>segment</th>"
            f"<th>n</th>{head}</tr>{body}</table>{note}")


def render_report(result: dict[str, Any], plots: dict[str, Any],
                  title: str = "Reward model evaluation") -> str:
    """The HTML text of a report: ``result`` is a ``RewardEvalResult.to_json()`` and ``plots``
    the plot data :func:`prefline.evaluate.reward_metrics.evaluate_reward` returns with it."""
    headline: dict[str, Any] = {k: result[k] for k in ("n_pairs", "n_ties", "accuracy", "accuracy_ci", "ece",
                                       "temperature", "mean_margin", "tie_mean_abs_p")
                if k in result}
    imgs = [("Calibration", _reliability(plots)), ("Scores", _scores(plots)),
            ("Length bias", _length(plots))]
    if result.get("per_tag"):
        imgs.append(("Accuracy per tag", _bars(
            {k: v["accuracy"] for k, v in result["per_tag"].items()}, "Accuracy per tag",
            "pairwise accuracy")))
    if result.get("robustness"):
        imgs.append(("Robustness probes", _bars(
            {k: v["rose_fraction"] for k, v in result["robustness"].items()},
            "Share of responses whose score ROSE under a content-free edit", "fraction")))
    sections = [_inputs(result), f"<h2>Headline</h2>{_table(headline)}",
                f"<h2>Length bias</h2>{_table(result['length_bias'])}"]
    if result.get("robustness"):
        sections.append("<h2>Robustness probes</h2>" + _table(
            {k: f"mean Δ {v['mean_delta']:.3f}, rose for {v['rose_fraction']:.0%} of {v['n']}"
             for k, v in result["robustness"].items()}))
    if result.get("segments"):
        sections.append(_segments(result["segments"]))
    for key, label in (("per_tag", "Per tag"), ("ratings", "Agreement with ratings"),
                       ("rewardbench", "RewardBench")):
        if result.get(key):
            sections.append(f"<h2>{label}</h2>{_table(result[key])}")
    figures = "".join(f'<figure><img alt="{html.escape(n)}" src="{src}"><figcaption>'
                      f"{html.escape(n)}</figcaption></figure>" for n, src in imgs)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin-bottom:1em}th,td{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left;font-size:14px}figure{display:inline-block;margin:8px}"
        f"</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}"
        f"<h2>Plots</h2>{figures}</body></html>")


def write_report(result: dict[str, Any], plots: dict[str, Any], path: str | Path,
                 title: str = "Reward model evaluation") -> Path:
    """Render and write atomically (a temp file renamed into place)."""
    use_agg()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_report(result, plots, title), encoding="utf-8")
    tmp.replace(path)
    return path
