"""Consensus over several judgments of the same pair: majority vote or Bradley-Terry.

Pure functions over small Python structures so they can be tested by hand. A *vote* is the
winning response key, or ``None`` for a tie (``both_bad`` counts as a tie: it states no
preference between the two).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

AGGREGATES = ("majority", "bt")
TIES = ("drop", "keep", "half")


@dataclass(frozen=True)
class Outcome:
    """``winner``/``loser`` (None when the consensus is a tie) and how sure we are.

    ``strength`` is in [0.5, 1]: the share of the vote (majority) or the Bradley-Terry win
    probability of the winner; 0.5 for a tie.
    """

    winner: Hashable | None
    loser: Hashable | None
    strength: float
    votes: int


def majority(a: Hashable, b: Hashable, votes: Sequence[Hashable | None], ties: str) -> Outcome:
    """Majority between ``a`` and ``b``. With ``ties="half"`` a tie vote counts half a win
    for each side (so it dilutes the margin); otherwise tie votes only dilute the share.

    Example: votes ``[a, a, None]`` → a wins with strength 2/3 (``half``: 2.5/3).
    """
    tie_votes = sum(v is None for v in votes)
    wins_a = sum(v == a for v in votes)
    wins_b = sum(v == b for v in votes)
    half = 0.5 * tie_votes if ties == "half" else 0.0
    n = max(len(votes), 1)
    if wins_a == wins_b:
        return Outcome(None, None, 0.5, len(votes))
    win, lose, w = (a, b, wins_a) if wins_a > wins_b else (b, a, wins_b)
    return Outcome(win, lose, (w + half) / n, len(votes))


def bradley_terry(comparisons: Sequence[tuple[Hashable, Hashable, float]],
                  iters: int = 200, prior: float = 0.5) -> dict[Hashable, float]:
    """Bradley-Terry log-strengths from ``(i, j, s)`` = "i beat j with score s" (1 win,
    0.5 tie, 0 loss), fitted with Hunter's MM updates.

    ``prior`` adds that many virtual ties between every compared pair so items that won or
    lost everything keep finite strengths. Returned scores are centred (mean 0).
    """
    wins: dict[Hashable, float] = defaultdict(float)
    games: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for i, j, s in comparisons:
        wins[i] += s + prior / 2
        wins[j] += 1 - s + prior / 2
        key = (i, j) if str(i) <= str(j) else (j, i)
        games[key] += 1 + prior
    players = sorted(wins, key=str)
    p = dict.fromkeys(players, 1.0)
    for _ in range(iters):
        denom: dict[Hashable, float] = defaultdict(float)
        for (i, j), n in games.items():
            d = n / (p[i] + p[j])
            denom[i] += d
            denom[j] += d
        new = {k: wins[k] / denom[k] for k in players}
        norm = math.exp(sum(math.log(v) for v in new.values()) / len(new))
        new = {k: v / norm for k, v in new.items()}
        done = max(abs(new[k] - p[k]) for k in players) < 1e-10
        p = new
        if done:
            break
    return {k: math.log(v) for k, v in p.items()}


def bt_outcome(a: Hashable, b: Hashable, scores: dict[Hashable, float], votes: int) -> Outcome:
    """The pair's outcome under fitted Bradley-Terry log-strengths ``scores``."""
    diff = scores[a] - scores[b]
    if abs(diff) < 1e-9:
        return Outcome(None, None, 0.5, votes)
    prob = 1.0 / (1.0 + math.exp(-abs(diff)))
    return Outcome(a, b, prob, votes) if diff > 0 else Outcome(b, a, prob, votes)
