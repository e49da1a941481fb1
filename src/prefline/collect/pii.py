"""Personal data in what the ingest API receives, by the policy of the caller's source.

Events sent with API key ``prod`` come from source ``api:prod`` (the feedback rows'
``source``). Prompts (text or every message), responses and rationales are cleaned before
anything is stored; a text refused under ``reject`` is a 422 naming the field and the entity
type, and nothing of the request is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from prefline.collect.schemas import LogRequest
from prefline.collect.state import ApiError
from prefline.pii.redactor import PiiFound, Redactor

log = logging.getLogger("prefline.pii")


def source_of(key_name: str) -> str:
    """The source an API key's events are stored (and redacted) under."""
    return f"api:{key_name}"


def _report(r: Redactor, source: str, route: str) -> None:
    if r.stats.entities:
        counts = ", ".join(f"{n} {e}" for e, n in sorted(r.stats.entities.items()))
        log.info("%s %s: personal data %s (policy %s)", source, route, counts,
                 r.cfg.policy(source))


def clean_log(redactor: Redactor | None, body: LogRequest, key_name: str) -> LogRequest:
    """``body`` with its prompt and responses under the source's policy."""
    source = source_of(key_name)
    if redactor is None or (policy := redactor.policy(source)) == "keep":
        return body
    r = redactor.fresh()
    try:
        prompt: dict[str, Any] = {}
        if body.prompt.text is not None:
            prompt["text"] = r.clean(body.prompt.text, policy, source, field="prompt.text")
        if body.prompt.messages is not None:
            prompt["messages"] = [m.model_copy(update={"content": r.clean(
                m.content, policy, source, field=f"prompt.messages[{i}].content")})
                for i, m in enumerate(body.prompt.messages)]
        responses = [x.model_copy(update={"text": r.clean(
            x.text, policy, source, field=f"responses[{i}].text")})
            for i, x in enumerate(body.responses)]
    except PiiFound as exc:
        raise ApiError(422, f"{exc.field}: {exc.message}", field=exc.field) from None
    finally:
        _report(r, source, "log")
    return body.model_copy(update={"prompt": body.prompt.model_copy(update=prompt),
                                   "responses": responses})


def clean_events(redactor: Redactor | None, events: Sequence[Any], key_name: str,
                 prefix: str = "") -> list[Any]:
    """``events`` with their rationales under the source's policy; ``prefix`` names the list
    in error fields (``events[3].rationale``)."""
    source = source_of(key_name)
    if redactor is None or (policy := redactor.policy(source)) == "keep":
        return list(events)
    r = redactor.fresh()
    out = []
    try:
        for i, ev in enumerate(events):
            if ev.rationale:
                where = f"{prefix}[{i}].rationale" if prefix else "rationale"
                ev = ev.model_copy(update={"rationale": r.clean(ev.rationale, policy, source,
                                                                field=where)})
            out.append(ev)
    except PiiFound as exc:
        raise ApiError(422, f"{exc.field}: {exc.message}", field=exc.field) from None
    finally:
        _report(r, source, "feedback")
    return out
