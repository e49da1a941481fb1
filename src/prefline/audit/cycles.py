"""Intransitive preferences within a prompt: A > B, B > C and C > A.

Edges come from decisive pairwise labels. For the consensus check the votes on each
response pair are netted (more wins decide the edge, an even split gives no edge); the
per-annotator check builds one graph per (annotator, prompt) from that annotator's labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prefline.audit.bias import A, _decisive
from prefline.audit.load import AuditData


def _edges(group: np.ndarray, a: np.ndarray, b: np.ndarray, a_won: np.ndarray) -> np.ndarray:
    """``(E, 3)`` rows ``(group, winner, loser)`` after netting the votes on each pair."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    winner = np.where(a_won, a, b)
    vote = np.where(winner == lo, 1, -1)
    keys, inverse = np.unique(np.stack([group, lo, hi], axis=1), axis=0, return_inverse=True)
    net = np.bincount(inverse.reshape(-1), weights=vote, minlength=len(keys))
    keys, net = keys[net != 0], net[net != 0]
    win = np.where(net > 0, keys[:, 1], keys[:, 2])
    lose = np.where(net > 0, keys[:, 2], keys[:, 1])
    return np.stack([keys[:, 0], win, lose], axis=1)


def triangles(edges: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """All directed 3-cycles in a small graph, each once, rotated to start at its smallest id."""
    succ: dict[int, set[int]] = {}
    for u, v in edges:
        succ.setdefault(u, set()).add(v)
    found: set[tuple[int, int, int]] = set()
    for u, v in edges:
        for w in succ.get(v, ()):
            if u in succ.get(w, ()):
                k = (u, v, w).index(min(u, v, w))
                found.add(((u, v, w), (v, w, u), (w, u, v))[k])
    return sorted(found)


def _cycles_by_group(edges: np.ndarray) -> dict[int, list[tuple[int, int, int]]]:
    order = np.argsort(edges[:, 0], kind="stable")
    edges = edges[order]
    groups, starts, sizes = np.unique(edges[:, 0], return_index=True, return_counts=True)
    out = {}
    for g, s, n in zip(groups.tolist(), starts.tolist(), sizes.tolist(), strict=True):
        if n >= 3:  # a triangle needs three edges
            cyc = triangles([(int(u), int(v)) for u, v in edges[s:s + n, 1:]])
            if cyc:
                out[g] = cyc
    return out


def intransitive_cycles(data: AuditData, *, examples: int = 20) -> dict[str, Any]:
    """Consensus 3-cycles per prompt, and each annotator's own 3-cycles.

    Returns ``prompts_compared`` (prompts with three or more compared pairs),
    ``prompts_with_cycles``, ``cycles`` (count), ``examples`` (prompt id and the responses
    in cycle order, winner first) and ``by_annotator`` (name → number of own cycles).
    """
    rows = _decisive(data)
    if len(rows) == 0:
        return {"prompts_compared": 0, "prompts_with_cycles": 0, "cycles": 0, "examples": [],
                "by_annotator": {}}
    a, b = data.response_a[rows], data.response_b[rows]
    a_won = data.choice[rows] == A
    prompt = data.prompt_id[rows]
    consensus = _edges(prompt, a, b, a_won)
    per_prompt = _cycles_by_group(consensus)
    _, n = np.unique(consensus[:, 0], return_counts=True)
    out: dict[str, Any] = {
        "prompts_compared": int((n >= 3).sum()),
        "prompts_with_cycles": len(per_prompt),
        "cycles": sum(len(c) for c in per_prompt.values()),
        "examples": [{"prompt_id": p, "cycle": list(c)} for p in sorted(per_prompt)
                     for c in per_prompt[p]][:examples],
    }
    # One group per (annotator, prompt): fold both ids into one int64 key.
    ann = data.annotator[rows].astype(np.int64)
    own = _cycles_by_group(_edges(prompt * len(data.annotator_names) + ann, a, b, a_won))
    counts: dict[str, int] = {}
    for key, cyc in own.items():
        name = data.annotator_names[key % len(data.annotator_names)]
        counts[name] = counts.get(name, 0) + len(cyc)
    out["by_annotator"] = counts
    return out
