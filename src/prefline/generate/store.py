"""Write generated prompts and responses into the store (idempotent by content hash).

Hashes are the importer's (``formats.records.prompt_key``, ``store.ingest.response_hash``):
a response is keyed by its prompt and text, so generated pairs later exported and imported
again, or judged by ``prefline judge``, land on the same rows, and re-storing adds nothing.
The model and generation parameters of the first writer are kept on the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prefline.formats.examples import Messages, as_messages, prompt_text
from prefline.formats.records import prompt_key
from prefline.store.db import audit, session_scope
from prefline.store.ingest import response_hash
from prefline.store.models import Prompt, Response


@dataclass(frozen=True)
class Generation:
    """K responses to one prompt, with where they came from."""

    prompt: Messages
    responses: list[str]
    model: str | None = None
    gen_params: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    context: dict[str, Any] | None = field(default=None, compare=False)


def upsert_prompt(session: Session, messages: Messages, tags: Sequence[str] = (),
                  context: dict[str, Any] | None = None) -> tuple[int, str]:
    """``(prompt id, content hash)``, inserting the prompt if new (new tags are merged in)."""
    messages = as_messages(messages)
    key = prompt_key(messages)
    row = session.scalar(select(Prompt).where(Prompt.content_hash == key))
    if row is None:
        row = Prompt(content_hash=key, text=prompt_text(messages), messages=messages,
                     context=context, tags=sorted(set(tags)))
        session.add(row)
        session.flush()
    elif tags and not set(tags) <= set(row.tags or []):
        row.tags = sorted(set(row.tags or []) | set(tags))
    return row.id, key


def upsert_response(session: Session, prompt_id: int, prompt_hash: str, text: str,
                    model: str | None, gen_params: dict[str, Any] | None = None) -> tuple[int, bool]:
    """``(response id, created?)`` for ``text`` answering the prompt, inserting it if new."""
    key = response_hash(prompt_hash, text)
    found = session.scalar(select(Response.id).where(Response.content_hash == key))
    if found is not None:
        return found, False
    row = Response(content_hash=key, prompt_id=prompt_id, text=text, model=model,
                   gen_params=gen_params)
    session.add(row)
    session.flush()
    return row.id, True


def store_generations_in(session: Session, gens: Sequence[Generation]) -> tuple[list[list[int]], int]:
    """Upsert every prompt and response in the caller's transaction.

    Returns the response ids per generation (same order as ``g.responses``) and how many
    responses were new."""
    ids, new = [], 0
    for g in gens:
        pid, phash = upsert_prompt(session, g.prompt, g.tags, g.context)
        row = []
        for r in g.responses:
            rid, created = upsert_response(session, pid, phash, r, g.model, g.gen_params)
            row.append(rid)
            new += created
        ids.append(row)
    return ids, new


def store_generations(db: str | None, gens: Sequence[Generation], actor: str = "cli") -> dict[str, int]:
    """Store generations in one transaction; returns counts of prompts and (new) responses."""
    with session_scope(db) as session:
        ids, new = store_generations_in(session, gens)
        audit(session, actor, "generate.store", None, prompts=len(gens), new_responses=new)
    return {"prompts": len(gens), "responses": sum(len(i) for i in ids), "new_responses": new}
