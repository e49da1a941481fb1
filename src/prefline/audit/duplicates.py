"""Exact and near-duplicate prompts, and prompt leakage between a snapshot's splits.

Exact duplicates compare normalised text (Unicode NFKC, case-folded, punctuation and
whitespace collapsed). Near duplicates use MinHash over word 3-gram shingles with LSH
banding (Broder 1997; Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3):
every step is a numpy pass over all shingles, so 100k prompts take seconds, and only pairs
that share a band are compared.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9)
SHINGLE = 3


def normalise(text: str) -> str:
    """Text as compared for duplicates: NFKC, case-folded, runs of non-word chars → one space."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


@dataclass
class Duplicates:
    """``summary`` is the JSON part; ``cluster`` gives each prompt (in input order) a group id
    shared by all its exact and near duplicates (singletons get their own id)."""

    summary: dict[str, Any]
    cluster: np.ndarray
    opening: np.ndarray | None = None
    """Group id of each prompt's normalised opening user message, when openings were given."""


def _shingle_hashes(docs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes, starts)``: uint64 word-3-gram hashes of all docs back to back, and where
    each doc's run begins. Every doc is padded with two sentinel tokens so each real token
    starts one shingle and short docs still get one."""
    vocab: dict[str, int] = {}
    tokens: list[int] = []
    starts = np.zeros(len(docs), np.int64)
    for d, doc in enumerate(docs):
        starts[d] = len(tokens)
        tokens.extend(vocab.setdefault(w, len(vocab) + 1) for w in doc.split())
        tokens.extend((0, 0))
    tok = np.array(tokens, dtype=np.uint64)
    h = tok[:-2] * _M1 ^ tok[1:-1] * _M2 ^ tok[2:] * _M3
    real = np.ones(len(tok), dtype=bool)
    pads = np.concatenate([starts[1:], [len(tok)]])
    real[pads - 1] = real[pads - 2] = False  # a shingle starts at every real token
    keep = real[:-2]
    new_starts = np.cumsum(np.concatenate([[0], keep.astype(np.int64)]))[starts]
    return h[keep], new_starts


def minhash(docs: list[str], num_perm: int = 64, seed: int = 0) -> np.ndarray:
    """``(D, num_perm)`` uint32 MinHash signatures of non-empty normalised docs.

    Each permutation is an xor-multiply-shift hash of the shingle hash (uint64 arithmetic
    wraps by design); the minimum per doc comes from ``np.minimum.reduceat``.
    """
    hashes, starts = _shingle_hashes(docs)
    rng = np.random.default_rng(seed)
    xors = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    mults = rng.integers(0, 2**63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    sig = np.empty((len(docs), num_perm), dtype=np.uint32)
    for k in range(num_perm):
        v = ((hashes ^ xors[k]) * mults[k]) >> np.uint64(32)
        sig[:, k] = np.minimum.reduceat(v, starts)
    return sig


def _candidates(sig: np.ndarray, bands: int, max_group: int = 20) -> np.ndarray:
    """``(P, 2)`` doc pairs sharing at least one LSH band; big buckets are chained, not squared."""
    rows = sig.shape[1] // bands
    pairs: list[np.ndarray] = []
    for b in range(bands):
        band = sig[:, b * rows:(b + 1) * rows].astype(np.uint64)
        key = np.zeros(len(sig), np.uint64)
        for r in range(rows):
            key = (key ^ band[:, r]) * _M1
        order = np.argsort(key, kind="stable")
        ks = key[order]
        same = np.flatnonzero(ks[1:] == ks[:-1])
        pairs.append(np.stack([order[same], order[same + 1]], axis=1))  # neighbours in a bucket
        bounds = np.flatnonzero(np.diff(np.concatenate([[1], (ks[1:] != ks[:-1]).astype(np.int8), [1]])))
        for s, e in zip(bounds[:-1], bounds[1:], strict=True):
            if 2 < e - s <= max_group:
                members = order[s:e]
                i, j = np.triu_indices(len(members), k=2)
                pairs.append(np.stack([members[i], members[j]], axis=1))
    if not pairs:
        return np.zeros((0, 2), np.int64)
    allp = np.sort(np.concatenate(pairs), axis=1)
    return np.unique(allp, axis=0) if len(allp) else allp


def _examples(groups: dict[int, list[int]], ids: np.ndarray, texts: list[str], limit: int) -> list[dict[str, Any]]:
    out = []
    for members in sorted(groups.values(), key=lambda m: (-len(m), m[0]))[:limit]:
        out.append({"prompt_ids": [int(ids[m]) for m in members[:10]], "size": len(members),
                    "text": texts[members[0]][:160]})
    return out


def _groups(labels: np.ndarray, sizes: np.ndarray) -> dict[int, list[int]]:
    """Input positions grouped by label, for labels that occur more than once."""
    out: dict[int, list[int]] = {}
    for i in np.flatnonzero(sizes[labels] > 1).tolist():
        out.setdefault(int(labels[i]), []).append(i)
    return out


def _exact(texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """``(rep, docs)``: each text's index into the distinct normalised texts ``docs``."""
    uniq: dict[str, int] = {}
    rep = np.array([uniq.setdefault(normalise(t), len(uniq)) for t in texts], dtype=np.int64)
    return rep, list(uniq)


def _near_clusters(docs: list[str], threshold: float, num_perm: int, bands: int) -> tuple[np.ndarray, int]:
    """``(cluster per doc, verified pairs)``: connected components of near-duplicate pairs."""
    near_pairs = np.zeros((0, 2), np.int64)
    nonempty = np.array([i for i, d in enumerate(docs) if d], dtype=np.int64)
    if len(nonempty) > 1:
        sig = minhash([docs[i] for i in nonempty], num_perm)
        cand = _candidates(sig, bands)
        sim = (sig[cand[:, 0]] == sig[cand[:, 1]]).mean(1) if len(cand) else np.zeros(0)
        near_pairs = nonempty[cand[sim >= threshold]]
    graph = sparse.coo_matrix((np.ones(len(near_pairs)), (near_pairs[:, 0], near_pairs[:, 1])),
                              shape=(len(docs), len(docs)))
    return connected_components(graph, directed=False)[1], int(len(near_pairs))


def find_duplicates(ids: np.ndarray, texts: list[str], *, openings: list[str] | None = None,
                    threshold: float = 0.8, num_perm: int = 64, bands: int = 16,
                    examples: int = 10) -> Duplicates:
    """Exact and near-duplicate groups among prompts ``ids`` (texts in the same order).

    Near duplicates: estimated Jaccard similarity of word 3-gram sets ≥ ``threshold``
    (from ``num_perm`` MinHash values; 16 bands × 4 rows find pairs at J = 0.8 with
    probability > 0.999). ``summary["duplicates"]`` counts prompts that repeat an earlier
    one: Σ (group size − 1) over the combined exact + near groups. ``openings`` (each
    prompt's first user message) adds ``same_opening``: distinct conversations that start
    with the same question, reported apart because the prompts themselves differ.
    """
    rep, docs = _exact(texts)
    exact_sizes = np.bincount(rep, minlength=len(docs))
    doc_cluster, n_pairs = _near_clusters(docs, threshold, num_perm, bands)
    cluster = doc_cluster[rep]
    sizes = np.bincount(cluster)
    near_groups = _groups(cluster, np.bincount(doc_cluster))  # clusters of 2+ distinct texts
    exact_groups = _groups(rep, exact_sizes)
    summary: dict[str, Any] = {
        "prompts": int(len(ids)),
        "exact": {"groups": len(exact_groups), "extra_copies": int((exact_sizes[exact_sizes > 1] - 1).sum()),
                  "examples": _examples(exact_groups, ids, texts, examples)},
        "near": {"threshold": threshold, "pairs": n_pairs, "groups": len(near_groups),
                 "examples": _examples(near_groups, ids, texts, examples)},
        "duplicates": int((sizes[sizes > 1] - 1).sum()),
    }
    if openings is not None:
        first, _ = _exact(openings)
        first_sizes = np.bincount(first)
        # Only conversations that differ as a whole: exact copies are counted above already.
        distinct = np.bincount(first[np.unique(rep, return_index=True)[1]], minlength=len(first_sizes))
        groups = {k: v for k, v in _groups(first, first_sizes).items() if distinct[k] > 1}
        summary["same_opening"] = {"groups": len(groups), "extra_copies": int((distinct[distinct > 1] - 1).sum()),
                                   "examples": _examples(groups, ids, openings, examples)}
        return Duplicates(summary, cluster, first)
    return Duplicates(summary, cluster)


def leakage(ids: np.ndarray, texts: list[str], dups: Duplicates, splits: dict[str, np.ndarray],
            *, examples: int = 10) -> dict[str, Any]:
    """Prompts of a snapshot's evaluation splits that also occur in its train split.

    ``ids``/``texts`` are the audited prompts and ``dups`` their :func:`find_duplicates`
    result; ``splits`` maps split name → prompt ids. A held-out prompt leaks when the same
    prompt row is in train (``same_prompt``) or its exact/near duplicate group contains a
    train prompt (``similar_text``); ``leaked`` counts those over all non-train splits.
    ``same_opening`` counts further held-out conversations whose opening user message
    starts a train conversation: reported, not counted as leaked.
    """
    if not splits:
        return {"leaked": "not defined: no snapshot selected (use --snapshot)"}
    train = splits.get("train", np.zeros(0, np.int64))
    pos = {int(p): i for i, p in enumerate(ids.tolist())}

    def shares_group(held: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        if labels is None:
            return np.zeros(len(held), dtype=bool)
        in_train = {int(labels[pos[p]]) for p in train.tolist() if p in pos}
        return np.array([p in pos and int(labels[pos[p]]) in in_train for p in held.tolist()], dtype=bool)

    out: dict[str, Any] = {"splits": {k: int(len(v)) for k, v in sorted(splits.items())}}
    leaked_total = 0
    shown: list[dict[str, Any]] = []
    for name, held in sorted(splits.items()):
        if name == "train":
            continue
        same = np.isin(held, train)
        similar = shares_group(held, dups.cluster) & ~same
        opening = shares_group(held, dups.opening) & ~same & ~similar
        out[name] = {"same_prompt": int(same.sum()), "similar_text": int(similar.sum()),
                     "same_opening": int(opening.sum())}
        leaked_total += int(same.sum() + similar.sum())
        for p in held[same | similar][: max(0, examples - len(shown))].tolist():
            shown.append({"split": name, "prompt_id": int(p), "text": texts[pos[p]][:160] if p in pos else ""})
    out["leaked"] = leaked_total
    out["examples"] = shown
    return out
