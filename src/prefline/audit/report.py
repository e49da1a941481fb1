"""The audit as one self-contained HTML page: tables plus matplotlib plots inlined as PNG.

Plots are drawn with the Agg backend (no display needed) and embedded as base64 data URIs,
so the file can be mailed or attached to a CI run and still shows everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefline.audit.checks import METRIC_HELP
from prefline.audit.stats import is_number
from prefline.base.plots import png_base64, use_agg

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prefline audit</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.bad{color:#b00020;font-weight:600}.nd{color:#777;font-style:italic}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
</style></head><body>
<h1>prefline data audit</h1>
<h2>What was audited</h2><table>
<tr><th>store</th><td><code>{{ r.scope.db }}</code></td></tr>
<tr><th>data</th><td>{% if r.scope.snapshot is not none %}snapshot #{{ r.scope.snapshot }}{% if r.scope.snapshot_name %} <code>{{ r.scope.snapshot_name }}</code>{% endif %}
{% if r.scope.snapshot_hash %} (content hash <code>{{ r.scope.snapshot_hash }}</code>){% endif %}{% else %}the whole store (no snapshot){% endif %}</td></tr>
<tr><th>AI judges</th><td>{% for j in r.scope.judges %}<code>{{ j }}</code>{% if not loop.last %}, {% endif %}{% else %}none{% endfor %}</td></tr>
<tr><th>size</th><td>{{ r.scope.feedback }} feedback events, {{ r.scope.prompts }} prompts, {{ r.scope.annotators }} annotator(s)</td></tr>
</table>
{% if checks %}<h2>Rules</h2><table><tr><th>result</th><th>rule</th></tr>
{% for b in checks.breached %}<tr><td class="bad">breached</td><td>{{ b }}</td></tr>{% endfor %}
{% for p in checks.passed %}<tr><td>passed</td><td>{{ p }}</td></tr>{% endfor %}
{% for n in checks.not_evaluated %}<tr><td class="nd">not evaluated</td><td>{{ n.rule }}: {{ n.reason }}</td></tr>{% endfor %}
</table>{% endif %}
<h2>Headline metrics</h2><table><tr><th>metric</th><th>value</th><th>meaning</th></tr>
{% for k, v in r.metrics | dictsort %}<tr><td>{{ k }}</td><td{% if v is string %} class="nd"{% endif %}>{{ v }}</td>
<td>{{ help.get(k, "Krippendorff's alpha of " ~ k[6:] ~ " labels") }}</td></tr>{% endfor %}
</table>
<h2>Biases</h2>
{% macro share(p) %}{{ p.share }}{% if p.ci95 is not string %} (95% CI {{ p.ci95[0] }}–{{ p.ci95[1] }}, n={{ p.n }}){% endif %}{% endmacro %}
<p>Left-shown response wins: {{ share(r.position_bias) }}.<br>
Longer response wins (unequal lengths): {{ share(r.length_bias.longer_wins) }}.<br>
Chosen response is longer: {{ share(r.length_bias.chosen_longer) }}{% if r.length_bias.mean_chars_chosen %};
mean length chosen {{ r.length_bias.mean_chars_chosen }} vs rejected {{ r.length_bias.mean_chars_rejected }} characters{% endif %}.<br>
Ties: {{ share(r.choices.tie) }}; both bad: {{ share(r.choices.both_bad) }}.</p>
{% if r.labels.by_tag %}<h3>Labels per slice (prompt tag)</h3><table><tr><th>tag</th><th>labels</th></tr>
{% for tag, counts in r.labels.by_tag | dictsort %}<tr><td>{{ tag }}</td><td>{% for k, v in counts | dictsort %}{{ k }}: {{ v }} {% endfor %}</td></tr>{% endfor %}
</table>{% endif %}
<h2>Agreement</h2>
{% for q, a in r.agreement | dictsort %}<h3>{{ q }} ({{ a.level }})</h3>
<table><tr><th>items</th><th>items with 2+ labels</th><th>annotators</th><th>raw agreement</th><th>Krippendorff's α</th><th>mean Cohen's κ</th></tr>
<tr><td>{{ a["items"] }}</td><td>{{ a.items_with_2plus }}</td><td>{{ a.annotators }}</td><td>{{ a.raw_agreement }}</td><td>{{ a.alpha }}</td>
<td>{{ a.kappa.mean if a.kappa else "not defined: ratings use α only" }}</td></tr></table>
{% if a.annotators_vs_consensus %}<table><tr><th>annotator</th><th>kind</th><th>labels</th><th>agreement with consensus</th><th>outlier</th></tr>
{% for row in a.annotators_vs_consensus %}<tr><td>{{ row.annotator }}</td><td>{{ row.kind }}</td><td>{{ row.labels }}</td>
<td>{{ row.agreement_with_consensus }}</td><td{% if row.outlier %} class="bad"{% endif %}>{{ "yes" if row.outlier else "no" }}</td></tr>{% endfor %}</table>{% endif %}
{% endfor %}
{% for name, img in plots %}<h3>{{ name }}</h3><img alt="{{ name }}" src="data:image/png;base64,{{ img }}">{% endfor %}
<h2>Duplicates and leakage</h2>
<p>{{ r.duplicates.exact.groups }} exact-duplicate groups ({{ r.duplicates.exact.extra_copies }} extra copies);
{{ r.duplicates.near.pairs }} near-duplicate pairs at Jaccard ≥ {{ r.duplicates.near.threshold }};
{{ r.duplicates.same_opening.extra_copies }} distinct conversations reuse another's opening user message;
leakage: {{ r.leakage.leaked }}.</p>
{% for g in r.duplicates.exact.examples + r.duplicates.near.examples %}<p><code>{{ g.prompt_ids }}</code> {{ g.text }}</p>{% endfor %}
<h2>Intransitive cycles</h2><p>{{ r.cycles.cycles }} consensus cycles in {{ r.cycles.prompts_with_cycles }} of
{{ r.cycles.prompts_compared }} prompts with three or more compared pairs.</p>
<h2>Suspiciously fast labels</h2><p>{{ r.fast_annotations.count }} of {{ r.fast_annotations.n_timed }} timed human labels
(share {{ r.fast_annotations.share }}).</p>
<h2>Judges vs humans</h2>
{% for q, j in r.judge_vs_human | dictsort %}<p>{{ q }}: agreement {{ j.agreement }}</p>
{% for row in j.judges %}<p>{{ row.judge }}: n={{ row.n }}, agreement {{ row.agreement }}, κ {{ row.kappa }}</p>{% endfor %}{% endfor %}
</body></html>
"""


def _png(fig: Any) -> str:
    return png_base64(fig, dpi=90)


def _bias_plot(r: dict[str, Any]) -> Any:
    """Shares with 95% intervals against the 0.5 line of 'no bias'."""
    import matplotlib.pyplot as plt

    rows = [("left side wins", r["position_bias"]), ("longer wins", r["length_bias"]["longer_wins"]),
            ("chosen is longer", r["length_bias"]["chosen_longer"]), ("tie", r["choices"]["tie"]),
            ("both bad", r["choices"]["both_bad"])]
    rows = [(name, p) for name, p in rows if is_number(p["share"])]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1))
    for y, (_name, p) in enumerate(rows):
        lo, hi = p["ci95"]
        ax.errorbar(p["share"], y, xerr=[[p["share"] - lo], [hi - p["share"]]], fmt="o", capsize=4)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), [f"{n} (n={p['n']})" for n, p in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share, with 95% Wilson interval")
    return fig


def _labels_plot(r: dict[str, Any]) -> Any:
    """Stacked bars: each annotator's labels by value, as shares of their total."""
    import matplotlib.pyplot as plt

    by = r["labels"]["by_annotator"]
    names = sorted(by)[:40]
    values = sorted({v for n in names for v in by[n]})
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    left = [0.0] * len(names)
    for value in values:
        shares = [by[n].get(value, 0) / max(1, sum(by[n].values())) for n in names]
        ax.barh(names, shares, left=left, label=value)
        left = [a + b for a, b in zip(left, shares, strict=True)]
    ax.set_xlabel("share of the annotator's labels")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return fig


def _position_plot(rows: list[dict[str, Any]]) -> Any:
    """Each annotator's (or judge's) left-side win share with its 95% interval."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    for y, p in enumerate(rows):
        lo, hi = p["ci95"]
        ax.errorbar(p["share"], y, xerr=[[p["share"] - lo], [hi - p["share"]]], fmt="o", capsize=3,
                    color="#b00020" if lo > 0.5 or hi < 0.5 else "#4c72b0")
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), [f"{p['annotator']} (n={p['n']})" for p in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of wins by the left-shown response (red: interval excludes 0.5)")
    return fig


def _agreement_plot(rows: list[dict[str, Any]]) -> Any:
    import matplotlib.pyplot as plt

    rows = [x for x in rows if is_number(x["agreement_with_consensus"])]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    ax.barh([f"{x['annotator']} (n={x['compared']})" for x in rows], [x["agreement_with_consensus"] for x in rows],
            color=["#b00020" if x["outlier"] else "#4c72b0" for x in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel("agreement with the other annotators' majority (red: outlier)")
    return fig


def plots(r: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(title, base64 PNG)]`` for the report; a plot without data is left out."""
    use_agg()
    out = [("Label distribution per annotator", _png(_labels_plot(r))),
           ("Position, length and tie rates", _png(_bias_plot(r)))]
    if r["position_bias"]["by_annotator"]:
        out.append(("Position bias per annotator", _png(_position_plot(r["position_bias"]["by_annotator"][:40]))))
    for question, a in sorted(r["agreement"].items()):
        rows = a.get("annotators_vs_consensus", [])
        if any(is_number(x["agreement_with_consensus"]) for x in rows):
            out.append((f"Agreement with consensus: {question}", _png(_agreement_plot(rows))))
    return out


def render_html(result: dict[str, Any], checks: dict[str, Any] | None = None) -> str:
    """The whole report as an HTML string."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    return env.from_string(TEMPLATE).render(r=result, checks=checks, plots=plots(result), help=METRIC_HELP)


def write_report(result: dict[str, Any], path: str | Path, checks: dict[str, Any] | None = None) -> Path:
    """Write the HTML report to ``path`` atomically (a temp file renamed into place)."""
    path = Path(path)
    html = render_html(result, checks)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
