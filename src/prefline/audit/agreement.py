"""Inter-annotator agreement: raw agreement, Krippendorff's α, Cohen's κ, consensus.

All functions take a :class:`LabelTable` and work on per-item category counts, so their
cost grows with the number of labels, not with annotators × items.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from prefline.audit.stats import not_defined, rounded
from prefline.audit.tables import LabelTable

ONE_ANNOTATOR = "only one annotator"
NO_OVERLAP = "no item was labelled by two or more annotators"


def value_codes(table: LabelTable) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, domain)``: each label as an index into the sorted value domain."""
    if table.categories is not None:
        return table.value.astype(np.int64), np.arange(len(table.categories), dtype=np.float64)
    domain, codes = np.unique(table.value, return_inverse=True)
    return codes.reshape(-1).astype(np.int64), domain


def item_counts(table: LabelTable) -> tuple[np.ndarray, np.ndarray]:
    """``(counts (N, V), domain (V,))``: how many annotators gave each value to each item."""
    codes, domain = value_codes(table)
    v = len(domain)
    flat = np.bincount(table.item * v + codes, minlength=table.n_items * v)
    return flat.reshape(table.n_items, v), domain


def cohen_kappa(confusion: np.ndarray) -> float:
    """Cohen's κ from a ``(V, V)`` confusion matrix of counts (rows: rater 1, cols: rater 2).

    κ = (p_o − p_e) / (1 − p_e), p_o = trace / n, p_e = Σ_c row_c · col_c / n² (Cohen 1960).
    Returns NaN when p_e == 1 (both raters always gave the same single category).
    """
    n = confusion.sum()
    if n == 0:
        return float("nan")
    po = np.trace(confusion) / n
    pe = float((confusion.sum(1) * confusion.sum(0)).sum()) / (n * n)
    return float("nan") if pe >= 1.0 else float((po - pe) / (1.0 - pe))


def raw_and_alpha(table: LabelTable) -> dict[str, Any]:
    """Share of agreeing annotator pairs on shared items, and Krippendorff's α.

    ``pairs`` counts the (unordered) annotator pairs on shared items that the share is over.
    α uses the ``krippendorff`` package on value counts: nominal for categorical tables,
    interval (and ordinal, reported alongside) for ratings.
    """
    counts, domain = item_counts(table)
    n = counts.sum(1)
    pairable = n >= 2
    out: dict[str, Any] = {"level": table.level, "items": table.n_items, "labels": int(len(table.item)),
                           "items_with_2plus": int(pairable.sum()),
                           "pairs": int((n[pairable] * (n[pairable] - 1)).sum() // 2),
                           "annotators": int(len(np.unique(table.annotator)))}
    reason = ONE_ANNOTATOR if out["annotators"] < 2 else NO_OVERLAP if not pairable.any() else None
    if reason is not None:
        out["raw_agreement"] = out["alpha"] = not_defined(reason)
        return out
    c = counts[pairable]
    out["raw_agreement"] = rounded((c * (c - 1)).sum() / (n[pairable] * (n[pairable] - 1)).sum())
    out["alpha"] = _alpha(c, domain, table.level)
    if table.level == "interval":
        out["alpha_ordinal"] = _alpha(c, domain, "ordinal")
    return out


def _alpha(counts: np.ndarray, domain: np.ndarray, level: Any) -> float | str:
    import krippendorff

    if counts.sum(0).astype(bool).sum() < 2:
        return not_defined("every label on shared items is the same value, so α has no variation to explain")
    with np.errstate(invalid="ignore", divide="ignore"):
        value = krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=level)
    return rounded(value)


def kappa_pairs(table: LabelTable, names: list[str], *, min_overlap: int = 10,
                max_annotators: int = 300, max_listed: int = 200) -> dict[str, Any]:
    """Cohen's κ for every annotator pair that shares at least ``min_overlap`` items.

    ``mean`` averages all such pairs; ``pairs`` lists the ``max_listed`` with the most
    shared items (``pairs_total`` says how many there were).

    Confusion matrices for all pairs come from sparse products of per-category indicator
    matrices (annotators × items), so no Python loop runs over items. Only the
    ``max_annotators`` most active annotators are paired (bounded A² memory).
    """
    codes, domain = value_codes(table)
    v = len(domain)
    ann_ids, ann = np.unique(table.annotator, return_inverse=True)
    if len(ann_ids) < 2:
        return {"pairs": [], "mean": not_defined(ONE_ANNOTATOR)}
    top = np.argsort(-np.bincount(ann))[:max_annotators]
    keep = np.isin(ann, top)
    remap = np.full(len(ann_ids), -1)
    remap[top] = np.arange(len(top))
    rows, items, codes = remap[ann[keep]], table.item[keep], codes[keep]
    a = len(top)
    ind = [sparse.csr_matrix((np.ones(int((codes == c).sum())), (rows[codes == c], items[codes == c])),
                             shape=(a, table.n_items)) for c in range(v)]
    conf = np.zeros((a, a, v, v))
    for c in range(v):
        for d in range(v):
            conf[:, :, c, d] = (ind[c] @ ind[d].T).toarray()
    pairs: list[dict[str, Any]] = []
    for i, j in zip(*np.triu_indices(a, k=1), strict=True):
        n = int(conf[i, j].sum())
        if n >= min_overlap:
            pairs.append({"a": names[int(ann_ids[top[i]])], "b": names[int(ann_ids[top[j]])],
                          "n": n, "kappa": rounded(cohen_kappa(conf[i, j]))})
    pairs.sort(key=lambda p: -int(p["n"]))
    values = [p["kappa"] for p in pairs if isinstance(p["kappa"], float)]
    mean: float | str = round(float(np.mean(values)), 6) if values else not_defined(
        f"no annotator pair shares {min_overlap} or more items")
    return {"pairs": pairs[:max_listed], "pairs_total": len(pairs), "mean": mean,
            "min_overlap": min_overlap}


def majority(counts: np.ndarray) -> np.ndarray:
    """Per row of ``(N, V)`` counts: the strictly most frequent category, or -1 (none/tied)."""
    best = counts.max(1, initial=0)
    unique = (counts == best[:, None]).sum(1) == 1
    return np.where(unique & (best > 0), counts.argmax(1), -1)


def consensus(table: LabelTable, names: list[str], kinds: list[str], *, min_items: int = 20,
              min_gap: float = 0.15) -> list[dict[str, Any]]:
    """Each annotator's agreement with the leave-one-out majority of the other annotators.

    The annotator's own label is removed from the item's counts before taking the
    majority, so a prolific annotator cannot agree with themselves. An annotator with at
    least ``min_items`` compared items is an outlier when their agreement is below
    ``median − max(min_gap, 3 × 1.4826 × MAD)`` of those annotators (a robust z < −3).
    """
    counts, _ = item_counts(table)
    codes, _ = value_codes(table)
    others = counts[table.item].copy()
    others[np.arange(len(codes)), codes] -= 1
    maj = majority(others)
    has = maj >= 0
    n_ann = len(names)
    compared = np.bincount(table.annotator[has], minlength=n_ann)
    agreed = np.bincount(table.annotator[has], weights=(maj == codes)[has], minlength=n_ann)
    labels = np.bincount(table.annotator, minlength=n_ann)
    present = [int(i) for i in np.flatnonzero(labels)]
    share = {int(i): agreed[i] / compared[i] for i in present if compared[i] > 0}
    eligible = np.array([share[i] for i in share if compared[i] >= min_items])
    cut = -np.inf
    if len(eligible) >= 3:
        med = float(np.median(eligible))
        mad = float(np.median(np.abs(eligible - med)))
        cut = med - max(min_gap, 3 * 1.4826 * mad)
    out = []
    for i in present:
        row: dict[str, Any] = {"annotator": names[i], "kind": kinds[i], "labels": int(labels[i]),
                               "compared": int(compared[i])}
        if i in share:
            row["agreement_with_consensus"] = round(float(share[i]), 6)
            row["outlier"] = bool(compared[i] >= min_items and share[i] < cut)
        else:
            row["agreement_with_consensus"] = not_defined(
                ONE_ANNOTATOR if len(present) < 2 else "no item of theirs has a clear majority among other annotators")
            row["outlier"] = False
        out.append(row)
    return out


def judge_vs_human(table: LabelTable, names: list[str], kinds: list[str]) -> dict[str, Any]:
    """Each AI judge against the human majority on items both labelled (nominal tables).

    Items whose human votes tie have no human label and are skipped. Returns per judge
    ``{"judge", "n", "agreement", "kappa"}`` plus the pooled agreement over all judges.
    """
    codes, domain = value_codes(table)
    v = len(domain)
    kind_of = np.array(kinds)[table.annotator] if len(table.annotator) else np.array([], dtype=str)
    human = kind_of == "human"
    counts = np.bincount(table.item[human] * v + codes[human], minlength=table.n_items * v)
    human_label = majority(counts.reshape(table.n_items, v))
    judge_rows = np.flatnonzero((kind_of == "ai_judge") & (human_label[table.item] >= 0))
    if not human.any() or not (kind_of == "ai_judge").any():
        missing = "human" if not human.any() else "AI judge"
        return {"judges": [], "agreement": not_defined(f"no {missing} labels in this data")}
    if len(judge_rows) == 0:
        return {"judges": [], "agreement": not_defined("no item was labelled by both a judge and humans")}
    rows = []
    for judge in np.unique(table.annotator[judge_rows]):
        sel = judge_rows[table.annotator[judge_rows] == judge]
        conf = np.zeros((v, v))
        np.add.at(conf, (codes[sel], human_label[table.item[sel]]), 1)
        rows.append({"judge": names[int(judge)], "n": int(len(sel)),
                     "agreement": round(float(np.trace(conf) / conf.sum()), 6),
                     "kappa": rounded(cohen_kappa(conf))})
    pooled = float((codes[judge_rows] == human_label[table.item[judge_rows]]).mean())
    return {"judges": rows, "agreement": round(pooled, 6), "n": int(len(judge_rows))}
