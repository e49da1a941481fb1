"""Turn K sampled responses per prompt into judged preference pairs (the RLAIF step).

Pair strategies:

- ``all``: every unordered pair of distinct responses is judged and each becomes a row —
  K(K-1)/2 pairs per prompt, the most signal per sample;
- ``best-worst``: every pair is still judged (and stored), but only one row per prompt is
  written: the response with the most wins (ties count half) against the one with the
  fewest, as in UltraFeedback-style binarisation. Written only if the judge's direct verdict
  on that pair is not a tie.

Identical responses are never paired (nothing to prefer). Ties are explicit rows with
``"tie": true`` (the importer reads them; DPO exporters drop them), unless ``ties="drop"``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from prefline.base.errors import PreflineError
from prefline.generate.store import Generation
from prefline.judges.base import Judge, PairItem, judge_all
from prefline.judges.store import JudgedPair

STRATEGIES = ("all", "best-worst")


def candidate_pairs(responses: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs (i < j) of distinct, non-duplicate responses."""
    first: dict[str, int] = {}
    for i, r in enumerate(responses):
        first.setdefault(r, i)
    keep = sorted(first.values())
    return list(itertools.combinations(keep, 2))


def label_generations(judge: Judge, gens: Sequence[Generation], strategy: str = "all",
                      on_done: Callable[[int], None] | None = None
                      ) -> tuple[list[JudgedPair], list[tuple[int, JudgedPair]]]:
    """Judge pairs of each generation's responses.

    Returns every judged pair (for the store) and the selected ``(generation index, pair)``
    rows for the output file, per ``strategy``.
    """
    if strategy not in STRATEGIES:
        raise PreflineError(f"unknown pair strategy {strategy!r}; expected one of {STRATEGIES}",
                            field="pairs")
    index: list[tuple[int, int, int]] = []
    items: list[PairItem] = []
    for g_idx, g in enumerate(gens):
        for i, j in candidate_pairs(g.responses):
            index.append((g_idx, i, j))
            items.append((g.prompt, g.responses[i], g.responses[j]))
    verdicts = judge_all(judge, items, on_done=on_done)
    judged = [JudgedPair(gens[g].prompt, gens[g].responses[i], gens[g].responses[j], v,
                         gens[g].tags, gens[g].model, gens[g].gen_params)
              for (g, i, j), v in zip(index, verdicts, strict=True)]
    if strategy == "all":
        return judged, [(g, p) for (g, _, _), p in zip(index, judged, strict=True)]
    return judged, _best_vs_worst(index, judged)


def _best_vs_worst(index: list[tuple[int, int, int]], judged: list[JudgedPair]
                   ) -> list[tuple[int, JudgedPair]]:
    wins: dict[tuple[int, int], float] = {}
    by_pair: dict[tuple[int, int, int], JudgedPair] = {}
    for (g, i, j), p in zip(index, judged, strict=True):
        by_pair[(g, i, j)] = p
        share = {"a": 1.0, "b": 0.0, "tie": 0.5}[p.verdict.choice] if p.verdict.valid else 0.5
        wins[(g, i)] = wins.get((g, i), 0.0) + share
        wins[(g, j)] = wins.get((g, j), 0.0) + 1.0 - share
    rows = []
    for g in sorted({g for g, _, _ in index}):
        scored = sorted((w, k) for (gg, k), w in wins.items() if gg == g)
        worst, best = scored[0][1], scored[-1][1]
        pair = by_pair.get((g, min(best, worst), max(best, worst)))
        if pair is not None and pair.verdict.valid and pair.verdict.choice != "tie":
            rows.append((g, pair))
    return rows


def pair_record(judge: Judge, pair: JudgedPair) -> dict[str, Any]:
    """A JSONL row: prompt/chosen/rejected (+ tie, strength, verdict details) for importers."""
    v = pair.verdict
    chosen, rejected = (pair.b, pair.a) if v.choice == "b" else (pair.a, pair.b)
    return {"prompt": pair.prompt, "chosen": chosen, "rejected": rejected,
            "tie": v.choice == "tie", "strength": round(v.confidence, 6),
            "tags": list(pair.tags), "judge": judge.name, "rationale": v.rationale,
            "model": pair.model}
