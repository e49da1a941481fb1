"""A source's policy applied to a whole imported record: its prompt messages and responses.

A redacted prompt is a different prompt, so its ``prompt_key`` (the content hash that
identifies it in the store) is computed again from the redacted messages.
"""

from __future__ import annotations

import dataclasses

from prefline.formats.examples import (
    Messages,
    PreferencePair,
    RankingExample,
    UnpairedExample,
)
from prefline.formats.records import Example, Record, prompt_key
from prefline.pii.redactor import Redactor

_REPLY_FIELDS = {PreferencePair: ("chosen", "rejected"), UnpairedExample: ("completion",)}


def _prompt_field(messages: Messages, i: int) -> str:
    return "prompt" if len(messages) == 1 else f"prompt[{i}].content"


def clean_example(redactor: Redactor, ex: Example, policy: str, source: str, *,
                  path: str | None = None, line: int | None = None) -> Example:
    """``ex`` with every prompt message and response under ``policy`` (see
    :meth:`Redactor.clean`); raises :class:`~prefline.pii.redactor.PiiFound` under reject."""
    def clean(text: str, field: str) -> str:
        return redactor.clean(text, policy, source, field=field, path=path, line=line)

    prompt = [{"role": m["role"], "content": clean(m["content"], _prompt_field(ex.prompt, i))}
              for i, m in enumerate(ex.prompt)]
    changes: dict[str, object] = {}
    if prompt != ex.prompt:
        changes.update(prompt=prompt, prompt_key=prompt_key(prompt))
    if isinstance(ex, RankingExample):
        responses = tuple(clean(r, f"responses[{i}]") for i, r in enumerate(ex.responses))
        if responses != ex.responses:
            changes["responses"] = responses
    else:
        for name in _REPLY_FIELDS.get(type(ex), ("response",)):
            text = clean(getattr(ex, name), name)
            if text != getattr(ex, name):
                changes[name] = text
    return dataclasses.replace(ex, **changes) if changes else ex  # type: ignore[arg-type]


def clean_record(redactor: Redactor, rec: Record, policy: str, source: str,
                 path: str | None = None) -> Record:
    """``rec`` with its example cleaned (:func:`clean_example`), naming its line on reject."""
    ex = clean_example(redactor, rec.example, policy, source, path=path, line=rec.line)
    return rec if ex is rec.example else dataclasses.replace(rec, example=ex)
