"""Label biases and label hygiene: position, length, ties, distributions, fast annotations."""

from __future__ import annotations

from typing import Any

import numpy as np

from prefline.audit.load import MISSING, AuditData
from prefline.audit.stats import not_defined, proportion
from prefline.store.models import PAIRWISE_CHOICES

A, B, TIE, BOTH_BAD = (PAIRWISE_CHOICES.index(c) for c in ("a", "b", "tie", "both_bad"))


def _decisive(data: AuditData) -> np.ndarray:
    """Row indexes of pairwise events with a winner (choice a or b) and both responses."""
    return np.flatnonzero(data.kind_mask("pairwise") & ((data.choice == A) | (data.choice == B))
                          & (data.response_a >= 0) & (data.response_b >= 0))


def _per_annotator_share(data: AuditData, rows: np.ndarray, hits: np.ndarray,
                         min_n: int) -> list[dict[str, Any]]:
    n = np.bincount(data.annotator[rows], minlength=len(data.annotator_names))
    k = np.bincount(data.annotator[rows], weights=hits, minlength=len(data.annotator_names))
    return [{"annotator": data.annotator_names[i], **proportion(int(k[i]), int(n[i]), empty_reason="")}
            for i in np.flatnonzero(n >= min_n)]


def position_bias(data: AuditData, *, min_n: int = 20) -> dict[str, Any]:
    """Share of decisive pairwise labels won by the response shown on the left.

    0.5 means no position bias. Uses ``shown_left_id``; events without it are not counted.
    Includes a Wilson 95% interval, an exact binomial p-value against 0.5, and the same
    per annotator (those with at least ``min_n`` such labels).
    """
    rows = _decisive(data)
    rows = rows[data.shown_left[rows] != MISSING]
    winner = np.where(data.choice[rows] == A, data.response_a[rows], data.response_b[rows])
    left_won = (winner == data.shown_left[rows]).astype(np.float64)
    out = proportion(int(left_won.sum()), len(rows),
                     empty_reason="no decisive pairwise label records which response was shown left")
    out["by_annotator"] = _per_annotator_share(data, rows, left_won, min_n)
    return out


def _lengths(data: AuditData, ids: np.ndarray) -> np.ndarray:
    """Character length of each response id (-1 where the response is unknown)."""
    lookup = data.response_length
    return np.fromiter((lookup.get(int(i), -1) for i in ids), np.int64, len(ids))


def length_bias(data: AuditData) -> dict[str, Any]:
    """How often the longer response wins (length in characters).

    ``longer_wins``: among decisive pairs of unequal length, share won by the longer one
    (0.5 = no length bias). ``chosen_longer``: among all decisive pairs, share where the
    chosen response is strictly longer than the rejected one. Both with Wilson 95% CIs.
    """
    rows = _decisive(data)
    la, lb = _lengths(data, data.response_a[rows]), _lengths(data, data.response_b[rows])
    known = (la >= 0) & (lb >= 0)
    a_won = data.choice[rows][known] == A
    la, lb = la[known], lb[known]
    chosen = np.where(a_won, la, lb)
    rejected = np.where(a_won, lb, la)
    differ = chosen != rejected
    empty = "no decisive pairwise label with known response lengths"
    out: dict[str, Any] = {
        "longer_wins": proportion(int((chosen > rejected).sum()), int(differ.sum()), empty_reason=empty),
        "chosen_longer": proportion(int((chosen > rejected).sum()), int(known.sum()), empty_reason=empty),
    }
    if known.any():
        out["mean_chars_chosen"] = round(float(chosen.mean()), 2)
        out["mean_chars_rejected"] = round(float(rejected.mean()), 2)
    return out


def choice_rates(data: AuditData) -> dict[str, Any]:
    """Counts of a/b/tie/both_bad among pairwise labels, with tie and both-bad rates."""
    choices = data.choice[data.kind_mask("pairwise") & (data.choice >= 0)]
    counts = np.bincount(choices, minlength=len(PAIRWISE_CHOICES))
    n = int(counts.sum())
    empty = "no pairwise labels"
    return {"counts": {c: int(counts[i]) for i, c in enumerate(PAIRWISE_CHOICES)},
            "tie": proportion(int(counts[TIE]), n, empty_reason=empty, test_half=False),
            "both_bad": proportion(int(counts[BOTH_BAD]), n, empty_reason=empty, test_half=False)}


def _event_labels(data: AuditData) -> np.ndarray:
    """One short label name per event: the pairwise choice, up/down for binary, else the kind."""
    names = np.array(data.kind_names(), dtype=object)
    pair = data.kind_mask("pairwise") & (data.choice >= 0)
    names[pair] = np.array(PAIRWISE_CHOICES, dtype=object)[data.choice[pair]]
    for row in np.flatnonzero(data.kind_mask("binary")):
        value = data.payloads.get(int(row), {}).get("value")
        names[row] = "up" if value is True else "down" if value is False else "binary"
    return names


def _counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels.astype(str), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def label_distribution(data: AuditData, *, max_tags: int = 50) -> dict[str, Any]:
    """Label counts per annotator and per prompt tag (slice); the ``max_tags`` largest tags."""
    labels = _event_labels(data)
    by_annotator = {data.annotator_names[i]: _counts(labels[data.annotator == i])
                    for i in np.unique(data.annotator)}
    tag_prompts: dict[str, list[int]] = {}
    for pid, tags in zip(data.prompt_ids.tolist(), data.prompt_tags, strict=True):
        for tag in tags:
            tag_prompts.setdefault(tag, []).append(pid)
    largest = sorted(tag_prompts, key=lambda t: -len(tag_prompts[t]))[:max_tags]
    by_tag = {tag: _counts(labels[np.isin(data.prompt_id, tag_prompts[tag])]) for tag in sorted(largest)}
    untagged = {pid for pid, tags in zip(data.prompt_ids.tolist(), data.prompt_tags, strict=True) if not tags}
    if tag_prompts and untagged:
        by_tag["(untagged)"] = _counts(labels[np.isin(data.prompt_id, list(untagged))])
    return {"overall": _counts(labels), "by_annotator": by_annotator, "by_tag": by_tag,
            "tags_total": len(tag_prompts)}


def fast_annotations(data: AuditData, *, min_ms: float = 2000.0, relative: float = 0.25,
                     min_timed: int = 10, examples: int = 20) -> dict[str, Any]:
    """Human labels given suspiciously fast.

    A label is fast when ``time_spent_ms < min_ms`` or, for an annotator with at least
    ``min_timed`` timed labels, when it is below ``relative ×`` that annotator's median.
    AI judges and implicit signals are not checked (their time is not reading time).
    """
    human = np.array([k == "human" for k in data.annotator_kinds], dtype=bool)
    rows = np.flatnonzero(~np.isnan(data.time_ms) & human[data.annotator] if len(data.annotator)
                          else np.zeros(0, bool))
    if len(rows) == 0:
        return {"n_timed": 0, "count": 0, "share": not_defined("no human label records time spent")}
    t, ann = data.time_ms[rows], data.annotator[rows]
    median = np.full(len(data.annotator_names), np.nan)
    for i in np.unique(ann):
        mine = t[ann == i]
        if len(mine) >= min_timed:
            median[i] = np.median(mine)
    fast = (t < min_ms) | (t < relative * np.nan_to_num(median[ann], nan=0.0))
    per = np.bincount(ann[fast], minlength=len(data.annotator_names))
    return {"n_timed": int(len(rows)), "count": int(fast.sum()), "share": round(float(fast.mean()), 6),
            "min_ms": min_ms, "relative_to_median": relative,
            "by_annotator": {data.annotator_names[i]: {"fast": int(per[i]), "median_ms": float(median[i])
                             if np.isfinite(median[i]) else not_defined(f"fewer than {min_timed} timed labels")}
                             for i in np.flatnonzero(per)},
            "examples": [int(x) for x in data.feedback_id[rows[fast]][:examples]]}
