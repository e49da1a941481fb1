"""Figures and an HTML page for a policy evaluation (used by ``eval policy`` and the demo).

Figures are real PNGs drawn with matplotlib's Agg backend (no display needed). The page
either embeds them as data URIs (one self-contained file) or links PNG files saved beside it.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefline.base.plots import data_uri, new_figure, png_bytes


def _ci_text(ci: list[float] | None) -> str:
    """`` [low, high]`` for a CI, empty for results recorded before it existed."""
    return f" [{pct(ci[0])}, {pct(ci[1])}]" if ci else ""


def matrix_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The judge matrix of a result; results recorded before it existed give their headline
    judge (role unknown: shown as recorded) and their proxy."""
    if result.get("matrix"):
        return list(result["matrix"])
    rows = [{**result["judge"], "role": result["judge"].get("role", "not recorded")}]
    if result.get("proxy"):
        rows.append({"spec": "reward model", "role": "proxy", **result["proxy"]})
    return rows


ROLE_COLOURS = {"held-out": "#3b6ea8", "labelling": "#999999", "proxy": "#c77c2e"}


def fig_win_rates(result: dict[str, Any]) -> bytes:
    """Policy-vs-baseline win rate under every judge of the matrix, with 95% CIs, coloured by
    role (held-out, labelling, proxy), against the 50%/60% lines."""
    rows = matrix_rows(result)
    names = [f"{r['spec'][:18]}\n({r['role']})" for r in rows]
    rates = [r["win_rate"] for r in rows]
    err = [[r["win_rate"] - r["ci"][0] for r in rows], [r["ci"][1] - r["win_rate"] for r in rows]]
    fig, ax = new_figure(max(5.0, 1.3 * len(rows) + 1.5), 3.6)
    ax.bar(names, rates, yerr=err, capsize=6,
           color=[ROLE_COLOURS.get(r["role"], "#7fa7d4") for r in rows])
    ax.axhline(0.5, color="grey", lw=1, ls="--", label="no difference (50%)")
    ax.axhline(0.6, color="green", lw=1, ls=":", label="target (60%, held-out judge)")
    ax.set_ylim(0, 1)
    ax.set_ylabel("win rate of policy over baseline")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(loc="lower right", fontsize=7)
    return png_bytes(fig)


def fig_lengths(result: dict[str, Any]) -> bytes:
    """Histogram of response lengths (words), baseline vs policy."""
    fig, ax = new_figure()
    la, lb = result["policy"]["lengths"], result["baseline"]["lengths"]
    top = max([*la, *lb, 1])
    bins = list(range(0, top + 5, max(1, top // 20)))
    ax.hist(lb, bins=bins, alpha=0.6, label="baseline (reference)", color="#999999")
    ax.hist(la, bins=bins, alpha=0.6, label="policy", color="#3b6ea8")
    ax.set_xlabel("response length (words)")
    ax.set_ylabel("responses")
    ax.legend(fontsize=8)
    return png_bytes(fig)


def fig_refusals(result: dict[str, Any]) -> bytes:
    """Refusal rate per slice, before (baseline) and after (policy)."""
    slices = ["should_refuse", "should_not_refuse", "all"]
    fig, ax = new_figure()
    xs = range(len(slices))
    for k, (side, color) in enumerate((("baseline", "#999999"), ("policy", "#3b6ea8"))):
        vals = [result[side]["refusal_rate"].get(s) or 0.0 for s in slices]
        ax.bar([x + (k - 0.5) * 0.38 for x in xs], vals, width=0.38, label=side, color=color)
    ax.set_xticks(list(xs), slices)
    ax.set_ylim(0, 1)
    ax.set_ylabel("refusal rate")
    ax.legend(fontsize=8)
    return png_bytes(fig)


def category_rates(judge: dict[str, Any]) -> dict[str, tuple[float, int | None]]:
    """``{category: (win rate, n)}`` of one matrix row (n None: recorded before it existed)."""
    return {c: (v["win_rate"], v["n"]) if isinstance(v, dict) else (v, None)
            for c, v in judge["per_category"].items()}


def fig_categories(result: dict[str, Any]) -> bytes:
    """Headline judge's win rate per prompt category, each label with its n."""
    cats = category_rates(result["judge"])
    fig, ax = new_figure(6.5, 3.4)
    labels = [c if n is None else f"{c} (n={n})" for c, (_, n) in cats.items()]
    ax.barh(labels, [r for r, _ in cats.values()], color="#3b6ea8")
    ax.axvline(0.5, color="grey", lw=1, ls="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"win rate under {result['judge']['spec']} (held-out judge)")
    return png_bytes(fig)


POLICY_FIGURES: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "win_rates": fig_win_rates, "lengths": fig_lengths, "refusals": fig_refusals,
    "categories": fig_categories,
}


def image_sources(figures: dict[str, bytes], folder: Path | None) -> dict[str, str]:
    """``<img src>`` per figure: PNG files written into ``folder``, or data URIs when None."""
    out = {}
    for name, data in figures.items():
        if folder is None:
            out[name] = data_uri(data)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.png").write_bytes(data)
            out[name] = f"{folder.name}/{name}.png"
    return out


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def metrics_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(metric, baseline, policy)`` rows for the before/after table."""
    b, a = result["baseline"], result["policy"]
    rows = [("mean length (words)", f"{b['mean_length_words']:.1f}", f"{a['mean_length_words']:.1f}"),
            ("distinct-1", f"{b['distinct_1']:.3f}", f"{a['distinct_1']:.3f}"),
            ("distinct-2", f"{b['distinct_2']:.3f}", f"{a['distinct_2']:.3f}")]
    for s in ("should_refuse", "should_not_refuse"):
        rows.append((f"refusal rate: {s}", pct(b["refusal_rate"][s]), pct(a["refusal_rate"][s])))
    return rows


INPUT_ROLES = (("policy", "policy (A)"), ("baseline", "baseline (B)"), ("judge", "judge"),
               ("reward_model", "reward model (proxy)"), ("prompts", "prompts"))


def inputs_table(result: dict[str, Any]) -> str:
    """HTML table of what was compared: each input as the user named it, its artifact id
    when registered, and what was loaded (or the prompts' content hash)."""
    e = html.escape
    named = result.get("named_inputs") or {}
    lines = ["<table><tr><th>input</th><th>as given</th><th>artifact</th><th>loaded from / "
             "content hash</th></tr>"]
    for key, label in INPUT_ROLES:
        item = named.get(key)
        if not item:
            continue
        art = f"#{item['artifact_id']}" if item.get("artifact_id") is not None else "not registered"
        where = item.get("path") or item.get("content_hash") or ""
        lines.append(f"<tr><td>{e(label)}</td><td><code>{e(item['spec'])}</code></td>"
                     f"<td>{e(art)}</td><td><code>{e(where)}</code></td></tr>")
    return "".join(lines) + "</table>"


def examples_section(result: dict[str, Any]) -> list[str]:
    """The side-by-side sample, with how it was drawn and what it holds."""
    e = html.escape
    shown = result["examples"]
    tally = {o: sum(ex["outcome"] == o for ex in shown)
             for o in ("policy wins", "baseline wins", "tie")}
    seed = result.get("sampling", {}).get("seed")
    lines = ["<h3>Side by side (held-out prompts)</h3>",
             f"<p>A seeded sample (seed {e(str(seed))}) of {len(shown)} comparisons, drawn from "
             f"wins, losses and ties in turn: {tally['policy wins']} policy wins, "
             f"{tally['baseline wins']} baseline wins, {tally['tie']} ties.</p>"]
    for ex in shown:
        lines.append(f"<div class='ex'><p><b>[{e(str(ex['category']))}]</b> {e(ex['prompt'])} "
                     f"<i>({e(ex['outcome'])})</i></p><div class='cols'><pre>{e(ex['baseline'])}</pre>"
                     f"<pre>{e(ex['policy'])}</pre></div></div>")
    return lines


def matrix_table(result: dict[str, Any]) -> str:
    """HTML table: policy vs baseline under each judge, its role, win rate and length-
    controlled rate with 95% CIs; the headline row is marked."""
    e = html.escape
    lines = ["<table><tr><th>judge</th><th>role</th><th>win rate (95% CI)</th>"
             "<th>length-controlled (95% CI)</th><th>comparisons</th></tr>"]
    for k, r in enumerate(matrix_rows(result)):
        lc = r.get("length_controlled_win_rate")
        lines.append(f"<tr><td><code>{e(r['spec'])}</code>{' <b>(headline)</b>' if k == 0 else ''}"
                     f"</td><td>{e(r['role'])}</td><td>{pct(r['win_rate'])}{_ci_text(r['ci'])}</td>"
                     f"<td>{pct(lc)}{_ci_text(r.get('length_controlled_ci'))}</td><td>{r['n']}</td></tr>")
    return "".join(lines) + "</table>"


def categories_table(result: dict[str, Any]) -> str:
    """HTML table: win rate per prompt category under each judge, with each category's n."""
    rows = [r for r in matrix_rows(result) if r.get("per_category")]
    if not rows:
        return ""
    e = html.escape
    per = [category_rates(r) for r in rows]
    head = "".join(f"<th>{e(r['spec'])} ({e(r['role'])})</th>" for r in rows)
    lines = [f"<table><tr><th>category</th><th>n</th>{head}</tr>"]
    for cat, (_, n) in per[0].items():
        cells = "".join(f"<td>{pct(p[cat][0]) if cat in p else 'n/a'}</td>" for p in per)
        lines.append(f"<tr><td>{e(cat)}</td><td>{'n/a' if n is None else n}</td>{cells}</tr>")
    return "".join(lines) + "</table>"


def policy_section(result: dict[str, Any], img: dict[str, str]) -> str:
    """HTML fragment: inputs, verdict, judge matrix, KL, figures, per-category table,
    before/after table, examples."""
    e = html.escape
    lines = [inputs_table(result),
             f"<p class='verdict {'ok' if result['verdict']['target_met'] else 'miss'}'>"
             f"{e(result['verdict']['text'])}</p>", "<h3>Policy vs baseline under each judge</h3>",
             matrix_table(result),
             "<p class='note'>Roles: <b>held-out</b> judges produced no training label and were "
             "not written with the labels in view (the headline is one of them); the "
             "<b>labelling</b> judge labelled the policy's training data and the <b>proxy</b> "
             "reward model was trained on those labels, so their win rates are not independent "
             "evidence: a policy that gains only under them is gaming its labels.</p>",
             "<table><tr><th>measure</th><th>value</th></tr>"]
    miss = result.get("kl_nucleus_miss")
    lines += ["<tr><td>KL(policy ‖ baseline) as sampled (temperature, top-p), nats per response"
              f"</td><td>{_kl(result['kl'])}"
              + (f" (baseline's nucleus misses a policy token at {pct(miss)} of positions)"
                 if miss is not None else "") + "</td></tr>",
              "<tr><td>KL(policy ‖ baseline) at temperature 1, nats per response</td>"
              f"<td>{_kl(result.get('kl_t1'))}</td></tr></table>"]
    lines += [f"<figure><img src='{img[k]}' alt='{k}'><figcaption>{cap}</figcaption></figure>"
              for k, cap in (("win_rates", "Win rate under each judge, 95% bootstrap CIs "
                                           "(over prompts)"),
                             ("categories", "Headline judge's win rate per prompt category"),
                             ("lengths", "Response lengths before and after"),
                             ("refusals", "Refusal rates per slice")) if k in img]
    lines.append(categories_table(result))
    lines.append("<table><tr><th>metric</th><th>baseline</th><th>policy</th></tr>")
    lines += [f"<tr><td>{e(m)}</td><td>{e(b)}</td><td>{e(a)}</td></tr>" for m, b, a in metrics_rows(result)]
    lines.append("</table>")
    return "\n".join(lines + examples_section(result))


STYLE = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
figure{display:inline-block;margin:.5em}img{max-width:460px}.verdict{padding:.6em;border-radius:4px}
.ok{background:#e3f4e1}.miss{background:#fbe6d5}.cols{display:grid;grid-template-columns:1fr 1fr;gap:8px}
pre{white-space:pre-wrap;background:#f6f6f6;padding:6px;font-size:12px;margin:0}
.cols:before{content:'baseline (reference)      |      policy';grid-column:1/3;font-size:11px;color:#666}"""


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>")


def write_policy_report(result: dict[str, Any], path: str | Path) -> Path:
    """One self-contained HTML file (figures embedded as PNG data URIs)."""
    path = Path(path)
    figures = {name: fn(result) for name, fn in POLICY_FIGURES.items()}
    body = policy_section(result, image_sources(figures, None))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    named = result.get("named_inputs") or {}
    title = "Policy evaluation"
    if named.get("policy") and named.get("baseline"):
        title += f": {named['policy']['spec']} vs {named['baseline']['spec']}"
    tmp.write_text(page(title, body), encoding="utf-8")
    tmp.replace(path)
    return path


def _kl(kl: float | None) -> str:
    """The KL cell: not measured through a generation backend other than hf (or greedily)."""
    return "not measured (backend or greedy)" if kl is None else f"{kl:.3f}"
