"""The judge protocol: pairwise verdicts and pointwise ratings, plus helpers every judge shares.

A judge compares two responses to one prompt (``judge``) or scores one response per criterion
(``rate``). Its ``config()`` is everything that determines its output (weights, model, prompt
template, weights fingerprint): it is stored with every verdict, hashed into the idempotency
key and into cache keys, so a changed judge never reuses an old judge's labels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from prefline.base.hashing import content_hash
from prefline.formats.examples import Messages, as_messages

CHOICES = ("a", "b", "tie")
PromptLike = str | Messages
PairItem = tuple[PromptLike, str, str]


@dataclass(frozen=True)
class Verdict:
    """Which of two responses is better. ``confidence`` is in [0, 1]: for a/b the judge's
    probability that its choice is right; for a tie how sure it is they are equally good.
    ``details`` carries judge-specific extras (per-order answers, scores, parse errors)."""

    choice: str
    confidence: float
    rationale: str
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.choice not in CHOICES:
            raise ValueError(f"verdict choice must be one of {CHOICES}, got {self.choice!r}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"verdict confidence must be in [0, 1], got {self.confidence}")

    @property
    def valid(self) -> bool:
        """False when the judge produced no usable answer (e.g. unparseable model output)."""
        return not self.details.get("parse_error")

    def swapped(self) -> Verdict:
        """The same verdict with a and b exchanged (for a judgment made in swapped order)."""
        choice = {"a": "b", "b": "a"}.get(self.choice, self.choice)
        return Verdict(choice, self.confidence, self.rationale, dict(self.details))

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice, "confidence": round(self.confidence, 6),
                "rationale": self.rationale, "details": self.details}


@runtime_checkable
class Judge(Protocol):
    """Anything that can compare two responses. ``both_orders`` says whether ``judge`` already
    looks at (a, b) and (b, a), so position bias is mitigated inside the judge."""

    name: str
    both_orders: bool

    def config(self) -> dict[str, Any]: ...

    def judge(self, prompt: PromptLike, a: str, b: str) -> Verdict: ...

    def rate(self, prompt: PromptLike, response: str) -> dict[str, float]: ...


def judge_all(judge: Judge, items: Sequence[PairItem],
              on_done: Callable[[int], None] | None = None) -> list[Verdict]:
    """Judge every ``(prompt, a, b)``; judges with a ``judge_many`` method (HTTP concurrency,
    batched LM forwards) get the whole list at once. ``on_done(k)`` reports progress."""
    many = getattr(judge, "judge_many", None)
    if many is not None:
        return list(many(items, on_done=on_done))
    out = []
    for prompt, a, b in items:
        out.append(judge.judge(prompt, a, b))
        if on_done is not None:
            on_done(1)
    return out


def combine_orders(first: Verdict, second: Verdict, p_a: float | None = None) -> Verdict:
    """Merge a judgment of (a, b) with one of (b, a) already mapped back to a/b labels.

    Agreeing orders keep their choice; disagreeing ones mean the judge followed position, not
    content, so the pair is recorded as a tie (position-bias mitigation). ``p_a``, when the
    judge has probabilities, is the order-averaged P(a better) and sets the confidence.
    """
    details: dict[str, Any] = {"orders": [first.choice, second.choice]}
    if p_a is not None:
        details["p_a"] = round(p_a, 6)
    if not first.valid or not second.valid:
        usable = second if first.valid is False else first
        if not usable.valid:
            return Verdict("tie", 0.0, "no usable verdict in either order",
                           {**details, "parse_error": True})
        # One order unparseable: its partner alone is position-biased evidence, so halve it.
        return Verdict(usable.choice, usable.confidence / 2, usable.rationale,
                       {**details, "one_order_only": True})
    if first.choice == second.choice:
        conf = (first.confidence + second.confidence) / 2
        if p_a is not None and first.choice != "tie":
            conf = p_a if first.choice == "a" else 1.0 - p_a
        return Verdict(first.choice, conf, first.rationale, details)
    return Verdict("tie", 0.5, f"inconsistent across orders ({first.choice} then "
                   f"{second.choice} after swapping): recorded as a tie", details)


def verdict_key(config: dict[str, Any], prompt: PromptLike, a: str, b: str) -> str:
    """Idempotency key of one judgment: the judge's full config, the prompt and both responses."""
    return content_hash({"judge": config, "prompt": as_messages(prompt), "a": a, "b": b})


def dir_fingerprint(path: str | Path) -> str:
    """sha256 over the names and bytes of the files in a model folder (or one file), so a judge
    config names the exact weights it used. Hashes ~0.5 GB/s; models here are < 1 GB."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(root) if root.is_dir() else f.name).encode())
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def weighted_scores(criteria: Mapping[str, Callable[[Any, str, Any], float | None]],
                    weights: Mapping[str, float], request: Any, response: str,
                    cfg: Any) -> dict[str, float]:
    """A rule judge's rating of ``response``: each criterion with a positive weight that
    applies to ``request`` (its function returns a number, not None) in [0, 1], rounded to
    6 places, plus ``overall``, the weighted mean of those that applied."""
    scores: dict[str, float] = {}
    for name, fn in criteria.items():
        if weights.get(name, 0.0) > 0:
            s = fn(request, response, cfg)
            if s is not None:
                scores[name] = round(float(s), 6)
    total = sum(weights[n] for n in scores)
    scores["overall"] = sum(weights[n] * s for n, s in scores.items()) / total
    return scores
