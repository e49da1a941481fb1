"""Turn feedback events into label tables: (item, annotator, value) triples per question type.

One question type is one thing annotators can agree or disagree about:

- ``pairwise``: an unordered response pair; the label says which one won, independent of
  which was called ``a`` (categories ``first``/``second`` = lower/higher response id,
  ``tie``, ``both_bad``);
- ``ranking``: each ordered response pair implied by a ranking (``first``/``second``);
- ``binary``: one response, thumbs up/down;
- ``rating:<criterion>``: one response's score on one criterion (interval data).

An annotator who labelled the same item twice counts once, with their latest label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prefline.audit.load import AuditData
from prefline.store.models import PAIRWISE_CHOICES

PAIR_CATEGORIES = ["first", "second", "tie", "both_bad"]


@dataclass
class LabelTable:
    """``K`` labels over ``N`` items: ``item``/``annotator`` are int64 indexes, ``value`` float.

    For nominal tables ``value`` holds category codes into ``categories``; ``item_keys`` is
    an ``(N, 2)`` int64 array of what identifies each item (response ids; pairs use both
    columns, single responses repeat the id).
    """

    question: str
    level: str
    item: np.ndarray
    annotator: np.ndarray
    value: np.ndarray
    item_keys: np.ndarray
    categories: list[str] | None = None

    @property
    def n_items(self) -> int:
        return int(self.item_keys.shape[0])


def label_table(question: str, level: str, keys: np.ndarray, annotator: np.ndarray,
                value: np.ndarray, categories: list[str] | None = None) -> LabelTable:
    """A table from ``K`` labels in arrival order: ``keys`` ``(K, 2)`` int64 identify each
    label's item, ``annotator`` ``(K,)`` int64 indexes, ``value`` ``(K,)`` category codes
    (into ``categories``) or numbers. Items are indexed by their keys and each annotator's
    latest label per item is kept. Used for store feedback here and for campaign labels by
    the admin page, so both measure agreement the same way."""
    uniq, item = np.unique(keys, axis=0, return_inverse=True) if len(keys) else (
        np.zeros((0, 2), np.int64), np.zeros(0, np.int64))
    item = item.reshape(-1)
    # Rows arrive in feedback-id order; the last row of each (item, annotator) run wins.
    order = np.lexsort((np.arange(len(item)), annotator, item))
    item_s, ann_s = item[order], annotator[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (item_s[1:] != item_s[:-1]) | (ann_s[1:] != ann_s[:-1])
    keep = order[last]
    return LabelTable(question, level, item[keep], annotator[keep].astype(np.int64),
                      value[keep].astype(np.float64), uniq.astype(np.int64), categories)


def pairwise_table(data: AuditData) -> LabelTable:
    mask = data.kind_mask("pairwise") & (data.choice >= 0) & (data.response_a >= 0) & (data.response_b >= 0)
    ra, rb, choice = data.response_a[mask], data.response_b[mask], data.choice[mask]
    lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
    winner = np.where(choice == PAIRWISE_CHOICES.index("a"), ra, rb)
    value = np.where(winner == lo, 0, 1)
    value = np.where(choice == PAIRWISE_CHOICES.index("tie"), 2, value)
    value = np.where(choice == PAIRWISE_CHOICES.index("both_bad"), 3, value)
    return label_table("pairwise", "nominal", np.stack([lo, hi], axis=1), data.annotator[mask], value,
                  PAIR_CATEGORIES)


def ranking_table(data: AuditData) -> LabelTable:
    """Every ordered pair a ranking implies, as a two-category pairwise label."""
    keys: list[tuple[int, int]] = []
    ann: list[int] = []
    vals: list[int] = []
    for row in np.flatnonzero(data.kind_mask("ranking")):
        order = [int(x) for x in (data.payloads.get(int(row), {}).get("order") or [])]
        for i, better in enumerate(order):
            for worse in order[i + 1:]:
                keys.append((min(better, worse), max(better, worse)))
                ann.append(int(data.annotator[row]))
                vals.append(0 if better < worse else 1)
    return label_table("ranking", "nominal", np.array(keys, np.int64).reshape(-1, 2),
                  np.array(ann, np.int64), np.array(vals, np.float64), PAIR_CATEGORIES[:2])


def binary_table(data: AuditData) -> LabelTable:
    rows = [r for r in np.flatnonzero(data.kind_mask("binary") & (data.response >= 0))
            if isinstance(data.payloads.get(int(r), {}).get("value"), bool)]
    idx = np.array(rows, np.int64)
    value = np.array([1.0 if data.payloads[int(r)]["value"] else 0.0 for r in rows])
    resp = data.response[idx]
    return label_table("binary", "nominal", np.stack([resp, resp], axis=1), data.annotator[idx], value,
                  ["down", "up"])


def rating_tables(data: AuditData) -> list[LabelTable]:
    """One interval table per rating criterion; non-numeric scores are ignored."""
    per: dict[str, tuple[list[int], list[float]]] = {}
    for row in np.flatnonzero(data.kind_mask("rating") & (data.response >= 0)):
        scores = data.payloads.get(int(row), {}).get("scores") or {}
        for criterion, score in scores.items():
            if isinstance(score, int | float) and not isinstance(score, bool):
                rows, values = per.setdefault(str(criterion), ([], []))
                rows.append(int(row))
                values.append(float(score))
    tables = []
    for criterion in sorted(per):
        rows_l, values_l = per[criterion]
        idx = np.array(rows_l, np.int64)
        resp = data.response[idx]
        tables.append(label_table(f"rating:{criterion}", "interval", np.stack([resp, resp], axis=1),
                             data.annotator[idx], np.array(values_l), None))
    return tables


def all_tables(data: AuditData) -> list[LabelTable]:
    """The non-empty label tables of this data, pairwise first."""
    tables = [pairwise_table(data), ranking_table(data), binary_table(data), *rating_tables(data)]
    return [t for t in tables if len(t.item)]
