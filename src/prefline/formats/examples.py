"""The in-memory shapes every trainer and evaluator consumes.

Every example may carry ``user`` (a pseudonymous user id) and ``segment`` (declared
attributes such as ``{"style": "concise"}``), the personal-data contract of issue 14.

A prompt is always a list of chat messages ``[{"role": ..., "content": ...}, ...]``; a plain
text prompt becomes one user message. Responses are the final assistant turn's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Messages = list[dict[str, str]]


def as_messages(prompt: str | Messages) -> Messages:
    """Plain text → one user message; a message list is copied with role/content only."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def prompt_text(messages: Messages) -> str:
    """A readable transcript for models without a chat template (e.g. encoders)."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


@dataclass(frozen=True)
class PreferencePair:
    """``chosen`` preferred over ``rejected`` for ``prompt`` (or a tie when ``tie``)."""

    prompt: Messages
    chosen: str
    rejected: str
    tie: bool = False
    strength: float | None = None
    tags: tuple[str, ...] = ()
    prompt_key: str = ""
    user: str | None = None
    """Pseudonymous id of the end user (never an e-mail or a name); None: not tied to a user."""
    segment: dict[str, str] = field(default_factory=dict, hash=False)
    """Declared segment attributes of that user, e.g. ``{"style": "concise"}``."""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class UnpairedExample:
    """KTO-style: one completion labelled desirable (True) or undesirable (False).

    ``meta`` may hold ``source`` (``"implicit:<signal>"`` for labels mapped from implicit
    signals) and ``weight`` (how much the label counts; explicit thumbs count 1)."""

    prompt: Messages
    completion: str
    label: bool
    tags: tuple[str, ...] = ()
    prompt_key: str = ""
    user: str | None = None
    """Pseudonymous id of the end user (never an e-mail or a name); None: not tied to a user."""
    segment: dict[str, str] = field(default_factory=dict, hash=False)
    """Declared segment attributes of that user, e.g. ``{"style": "concise"}``."""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class RankingExample:
    """``responses`` ordered best first."""

    prompt: Messages
    responses: tuple[str, ...]
    tags: tuple[str, ...] = ()
    prompt_key: str = ""
    user: str | None = None
    """Pseudonymous id of the end user (never an e-mail or a name); None: not tied to a user."""
    segment: dict[str, str] = field(default_factory=dict, hash=False)
    """Declared segment attributes of that user, e.g. ``{"style": "concise"}``."""


@dataclass(frozen=True)
class RatingExample:
    """Per-criterion scores for one response, e.g. ``{"helpfulness": 4}``."""

    prompt: Messages
    response: str
    scores: dict[str, float]
    tags: tuple[str, ...] = ()
    prompt_key: str = ""
    user: str | None = None
    """Pseudonymous id of the end user (never an e-mail or a name); None: not tied to a user."""
    segment: dict[str, str] = field(default_factory=dict, hash=False)
    """Declared segment attributes of that user, e.g. ``{"style": "concise"}``."""
