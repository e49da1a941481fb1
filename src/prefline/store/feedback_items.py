"""Feedback records → snapshot items, one builder per feedback kind.

Each builder takes the store's feedback rows of its kind (in id order) and the texts of
the responses they name, and returns plain item dicts (``{"kind", "prompt", "prompt_key",
"tags", "_pid", ...}``) plus a count of what it left out and why. The item dicts are
hashed as they are, so a key added here changes snapshot hashes: the pairwise, ranking,
rating and binary shapes are frozen; only implicit-derived items carry ``source`` and
``weight``, and only feedback with a user or segment carries ``user`` and ``segment``.

Consensus is per person: feedback of two users (or two segments) on the same pair makes
two items, so segments that disagree are never averaged into one label (issue 14). Rows
without a user or segment are all one "person", exactly as before users existed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from prefline.store.consensus import bradley_terry, bt_outcome, majority
from prefline.store.snapshot_config import ImplicitRule

Items = list[dict[str, Any]]
Person = tuple[str | None, tuple[tuple[str, str], ...]]
"""Whose judgment a row is: (user id, sorted segment attributes)."""


def person_of(r: Any) -> Person:
    """The row's user and segment as a hashable key (rows without them: ``(None, ())``)."""
    return r.user_id, tuple(sorted((r.segment or {}).items()))


def person_fields(person: Person) -> dict[str, Any]:
    """``{"user", "segment"}`` for an item, or nothing when the feedback has neither (so the
    items and hashes of snapshots made before users existed stay the same)."""
    user, segment = person
    return {"user": user, "segment": dict(segment)} if user is not None or segment else {}


def prompt_fields(r: Any) -> dict[str, Any]:
    """The prompt part of an item, from a feedback row joined with its prompt."""
    msgs = r.messages or [{"role": "user", "content": r.text or ""}]
    # "_pid" is the store's prompt id: kept out of the hashed content (ids differ per store).
    return {"prompt": msgs, "prompt_key": r.content_hash, "tags": sorted(r.tags or []),
            "_pid": r.prompt_id}


def pairwise_items(rows: list[Any], texts: dict[int, str], aggregate: str,
                   ties: str) -> tuple[Items, Counter[str]]:
    """One item per judged pair, by consensus of each annotator's latest vote."""
    latest: dict[tuple[int, frozenset[int], Person], dict[int, int | None]] = defaultdict(dict)
    info: dict[int, Any] = {}
    for r in rows:  # in id order, so a later judgment by the same annotator wins
        a, b = r.response_a_id, r.response_b_id
        vote = a if r.choice == "a" else b if r.choice == "b" else None
        latest[(r.prompt_id, frozenset((a, b)), person_of(r))][r.annotator_id] = vote
        info[r.prompt_id] = r
    scores: dict[tuple[int, Person], dict[Any, float]] = {}
    if aggregate == "bt":
        comps: dict[tuple[int, Person], list[tuple[Any, Any, float]]] = defaultdict(list)
        for (pid, pair, who), votes in latest.items():
            a, b = sorted(pair)
            comps[(pid, who)].extend((a, b, 0.5 if v is None else float(v == a))
                                     for v in votes.values())
        scores = {key: bradley_terry(c) for key, c in comps.items()}
    items: Items = []
    dropped: Counter[str] = Counter()
    for (pid, pair, who), votes in latest.items():
        a, b = sorted(pair, key=lambda i: texts[i])
        out = (bt_outcome(a, b, scores[(pid, who)], len(votes)) if aggregate == "bt"
               else majority(a, b, list(votes.values()), ties))
        if out.winner is None and ties == "drop":
            dropped["tied pairs (ties=drop)"] += 1
            continue
        win, lose = (out.winner, out.loser) if out.winner is not None else (a, b)
        items.append({"kind": "pairwise", **prompt_fields(info[pid]), **person_fields(who),
                      "chosen": texts[win], "rejected": texts[lose],  # type: ignore[index]
                      "tie": out.winner is None, "strength": round(out.strength, 6),
                      "votes": out.votes})
    return items, dropped


def binary_items(rows: list[Any], texts: dict[int, str]) -> tuple[Items, Counter[str]]:
    """Thumbs up/down: one item per response, labelled by majority of annotators' latest
    votes; an even split carries no label and is left out."""
    labels: dict[tuple[int, int, Person], dict[int, bool]] = defaultdict(dict)
    info = {r.prompt_id: r for r in rows}
    for r in rows:
        labels[(r.prompt_id, r.response_id, person_of(r))][r.annotator_id] = bool(r.payload["value"])
    items: Items = []
    dropped: Counter[str] = Counter()
    for (pid, rid, who), votes in labels.items():
        yes = sum(votes.values())
        if 2 * yes == len(votes):
            dropped["responses with evenly split votes"] += 1
            continue
        items.append({"kind": "binary", **prompt_fields(info[pid]), **person_fields(who),
                      "completion": texts[rid], "label": 2 * yes > len(votes)})
    return items, dropped


def rating_items(rows: list[Any], texts: dict[int, str]) -> Items:
    """One item per rated response: each criterion's mean over annotators' latest scores."""
    ratings: dict[tuple[int, int, Person], dict[int, dict[str, float]]] = defaultdict(dict)
    info = {r.prompt_id: r for r in rows}
    for r in rows:
        ratings[(r.prompt_id, r.response_id, person_of(r))][r.annotator_id] = r.payload["scores"]
    items: Items = []
    for (pid, rid, who), by in ratings.items():
        crit = sorted({c for s in by.values() for c in s})
        mean = {c: round(sum(s[c] for s in by.values() if c in s)
                         / sum(c in s for s in by.values()), 6) for c in crit}
        items.append({"kind": "rating", **prompt_fields(info[pid]), **person_fields(who),
                      "response": texts[rid], "scores": mean})
    return items


def ranking_items(rows: list[Any], texts: dict[int, str]) -> Items:
    """Rankings as given (best first); identical rankings of one response set once.
    Trainers that need pairs expand them with ``prefline.formats.load.ranking_pairs``."""
    rankings: dict[tuple[int, tuple[int, ...], Person], dict[int, list[int]]] = defaultdict(dict)
    info = {r.prompt_id: r for r in rows}
    for r in rows:
        order = list(r.payload["order"])
        rankings[(r.prompt_id, tuple(sorted(order)), person_of(r))][r.annotator_id] = order
    items: Items = []
    for (pid, _, who), orders in rankings.items():
        for ranked in {tuple(o) for o in orders.values()}:
            items.append({"kind": "ranking", **prompt_fields(info[pid]), **person_fields(who),
                          "responses": [texts[i] for i in ranked]})
    return items


def implicit_items(rows: list[Any], texts: dict[int, str],
                   rule: ImplicitRule) -> tuple[Items, Counter[str]]:
    """Implicit signals → binary items by ``rule``: one item per (response, signal).

    The item is ``kind: binary`` (what KTO trains on) with ``label`` from the rule,
    ``source: "implicit:<signal>"`` and the rule's ``weight``. A signal's ``value`` matters
    only for ``dwell_ms`` (milliseconds read, compared with ``rule.dwell_min_ms``).
    """
    groups: dict[tuple[int, int, str, Person], list[Any]] = defaultdict(list)
    for r in rows:
        signal = str((r.payload or {}).get("signal"))
        groups[(r.prompt_id, r.response_id, signal, person_of(r))].append(r)
    items: Items = []
    dropped: Counter[str] = Counter()
    for (_, rid, signal, who), group in groups.items():
        found = rule.rule(signal)
        if found is None:
            dropped[f"records with unknown signal {signal!r}"] += len(group)
            continue
        label, weight = found
        if label == "ignore":
            dropped[f"{signal} records (rule: ignore)"] += len(group)
            continue
        if signal == "dwell_ms":
            longest = max(float((r.payload or {}).get("value") or 0.0) for r in group)
            if longest < rule.dwell_min_ms:
                dropped[f"dwell_ms records below {rule.dwell_min_ms:g} ms"] += len(group)
                continue
        items.append({"kind": "binary", **prompt_fields(group[0]), **person_fields(who),
                      "completion": texts[rid], "label": label == "desirable", "source": f"implicit:{signal}",
                      "weight": weight})
    return items, dropped
