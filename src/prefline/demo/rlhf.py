"""The RLHF structure of the demo, as small pure steps the pipeline composes.

- **Annotator** (:func:`budget_pairs`, :func:`add_label_noise`): the labelling judge labels
  only ``label_budget`` pairs, drawn (seeded) from every pair of distinct candidates of the
  train prompts, and a ``label_noise`` share of its decisive labels is flipped (seeded), as
  human raters disagree. The reward model learns from these labels alone.
- **Policy optimised against the reward model** (:func:`best_vs_worst_rows`): the reward
  model scores every candidate of every train prompt (best-of-N scoring,
  :func:`prefline.generate.best_of_n.pick`); DPO trains on its best-vs-worst pair per prompt.
- **Over-optimisation curve** (:func:`bon_kl`, :class:`FixedBackend`): best-of-N under the
  proxy on the evaluation prompts, judged against a reference sample by the same evaluation
  (:func:`prefline.evaluate.policy.compare`) as the DPO policy.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prefline.generate.backend import Completion, Sampling
from prefline.generate.best_of_n import CandidateScorer, argmax, pick
from prefline.generate.store import Generation
from prefline.judges.label import candidate_pairs
from prefline.train.online_dpo import make_pairs

Pair = tuple[int, int, int]
"""(generation index, response i, response j), i < j."""


def budget_pairs(gens: Sequence[Generation], budget: int | None, seed: int) -> list[Pair]:
    """``budget`` pairs drawn without replacement (seeded) from every pair of distinct
    candidates of ``gens``, in file order; all of them when ``budget`` is None or larger."""
    every = [(g, i, j) for g, gen in enumerate(gens) for i, j in candidate_pairs(gen.responses)]
    if budget is None or budget >= len(every):
        return every
    return [every[k] for k in sorted(random.Random(seed).sample(range(len(every)), budget))]


def pair_generations(gens: Sequence[Generation], pairs: Sequence[Pair]) -> list[Generation]:
    """One two-response generation per pair: what the judge stage reads, so the annotator
    judges exactly the budgeted pairs."""
    return [Generation(gens[g].prompt, [gens[g].responses[i], gens[g].responses[j]],
                       gens[g].model, gens[g].gen_params, gens[g].tags) for g, i, j in pairs]


def add_label_noise(rows: list[dict[str, Any]], noise: float, seed: int,
                    ) -> tuple[list[dict[str, Any]], list[int]]:
    """``rows`` with ``round(noise × decisive rows)`` decisive labels flipped (chosen and
    rejected swapped; drawn seeded), and the flipped row indices. Ties stay ties."""
    decisive = [k for k, r in enumerate(rows) if not r.get("tie")]
    flipped = sorted(random.Random(seed).sample(decisive, round(noise * len(decisive))))
    out = [dict(r) for r in rows]
    for k in flipped:
        out[k]["chosen"], out[k]["rejected"] = rows[k]["rejected"], rows[k]["chosen"]
    return out, flipped


def best_vs_worst_rows(scorer: CandidateScorer, gens: Sequence[Generation],
                       on_prompt: Callable[[int], None] | None = None,
                       ) -> tuple[list[dict[str, Any]], list[list[float]]]:
    """The scorer's best against its worst candidate per prompt (online DPO's
    :func:`~prefline.train.online_dpo.make_pairs`), as import-ready pair rows; prompts whose
    best and worst score or read the same give none. Also every candidate's score, per
    prompt."""
    picks = pick(scorer, [g.prompt for g in gens], [g.responses for g in gens], on_prompt)
    rows = [{"prompt": g.prompt, "chosen": pair.chosen, "rejected": pair.rejected,
             "tie": False, "tags": list(g.tags), "judge": scorer.spec, "model": g.model}
            for g, p in zip(gens, picks, strict=True)
            for pair in make_pairs([g.prompt], [p], "best_vs_worst")]
    return rows, [p.scores for p in picks]


def bon_kl(n: int) -> float:
    """KL(best-of-n ‖ reference) ≤ log n − (n−1)/n nats (Beirami et al. 2024: the usual
    formula is an upper bound, tight when the candidates' scores are all distinct)."""
    return math.log(n) - (n - 1) / n


def nested_best(scores: Sequence[Sequence[float]], texts: Sequence[Sequence[str]], n: int,
                ) -> list[str]:
    """Per prompt, the best of its first ``n`` candidates (the pools of smaller n are prefixes
    of larger ones, so the curve's points share samples)."""
    return [ts[argmax(ss[:n])] for ss, ts in zip(scores, texts, strict=True)]


@dataclass
class FixedBackend:
    """A "policy" whose completions are given: best-of-N picks (or reference samples) drawn
    once, judged by the policy evaluation like any sampled policy."""

    texts: list[str]
    model: str
    name: str = "fixed"

    def generate(self, prompts: Sequence[Any], sampling: Sampling,
                 on_done: Callable[[int], None] | None = None) -> list[list[Completion]]:
        if on_done is not None:
            on_done(len(prompts))
        return [[Completion(t)] for t in self.texts]

    def config(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self.model}
