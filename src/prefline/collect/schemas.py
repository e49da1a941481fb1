"""JSON shapes of the ingest API (they are the OpenAPI schema).

Feedback events are a union told apart by ``kind``; pydantic reports a bad field by its
path (``events[3].choice``), which the API returns in its 422 body.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from prefline.store.models import IMPLICIT_SIGNALS


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL bytes; refuse them here as a 422, not a 500 later.
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


def _plain_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # Python's JSON parser lets NaN/Infinity through; PostgreSQL's json type does not.
    if value is not None:
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise ValueError("numbers must be finite (no NaN or Infinity)") from None
    return value


Str = Annotated[str, AfterValidator(_no_nul)]
JsonObject = Annotated[dict[str, Any] | None, AfterValidator(_plain_json)]
Id = Annotated[int, Field(ge=1, le=2**62)]
ShortText = Annotated[Str, Field(min_length=1, max_length=200)]
MAX_BATCH = 1000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: Annotated[Str, Field(max_length=200_000)]


class PromptIn(Strict):
    """A prompt as plain ``text`` or as chat ``messages`` (exactly one of them)."""

    text: Annotated[Str, Field(min_length=1, max_length=200_000)] | None = None
    messages: Annotated[list[Message], Field(min_length=1, max_length=500)] | None = None
    context: JsonObject = None
    tags: Annotated[list[ShortText], Field(max_length=50)] = []

    @model_validator(mode="after")
    def _one_form(self) -> PromptIn:
        if (self.text is None) == (self.messages is None):
            raise ValueError("give exactly one of 'text' or 'messages'")
        return self


class ResponseIn(Strict):
    text: Annotated[Str, Field(max_length=200_000)]
    model: Annotated[Str, Field(max_length=300)] | None = None
    model_version: Annotated[Str, Field(max_length=200)] | None = None
    gen_params: JsonObject = None


class LogRequest(Strict):
    """A production interaction: the prompt and the response(s) the model gave."""

    prompt: PromptIn
    responses: Annotated[list[ResponseIn], Field(min_length=1, max_length=64)]


class LogResult(BaseModel):
    prompt_id: int
    response_ids: list[int]


class EventBase(Strict):
    idempotency_key: Annotated[Str, Field(min_length=1, max_length=90)] | None = Field(
        None, description="Retries with the same key never create a second row.")
    user: Annotated[Str, Field(min_length=1, max_length=80)] | None = Field(
        None, description="End-user id; explicit feedback is stored under one annotator per user.")
    rationale: Annotated[Str, Field(max_length=20_000)] | None = None
    time_spent_ms: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None


class PairwiseEvent(EventBase):
    kind: Literal["pairwise"]
    response_a_id: Id
    response_b_id: Id
    choice: Literal["a", "b", "tie", "both_bad"]
    strength: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    shown_left_id: Id | None = None

    @model_validator(mode="after")
    def _distinct(self) -> PairwiseEvent:
        if self.response_a_id == self.response_b_id:
            raise ValueError("response_a_id and response_b_id must differ")
        if self.shown_left_id is not None and self.shown_left_id not in (
                self.response_a_id, self.response_b_id):
            raise ValueError("shown_left_id must be response_a_id or response_b_id")
        return self


class RatingEvent(EventBase):
    kind: Literal["rating"]
    response_id: Id
    scores: Annotated[dict[ShortText, Annotated[float, Field(ge=-1e6, le=1e6)]],
                      Field(min_length=1, max_length=50)]


class BinaryEvent(EventBase):
    kind: Literal["binary"]
    response_id: Id
    value: bool = Field(description="Thumbs up (true) or down (false).")


class ImplicitEvent(EventBase):
    kind: Literal["implicit"]
    response_id: Id
    signal: Literal[IMPLICIT_SIGNALS]  # type: ignore[valid-type]
    value: Annotated[float, Field(ge=0.0, le=1e9)] = 1.0


class RankingEvent(EventBase):
    kind: Literal["ranking"]
    response_ids: Annotated[list[Id], Field(min_length=2, max_length=64)] = Field(
        description="Best first.")

    @field_validator("response_ids")
    @classmethod
    def _unique(cls, ids: list[int]) -> list[int]:
        if len(set(ids)) != len(ids):
            raise ValueError("response ids must be distinct")
        return ids


Event = Annotated[PairwiseEvent | RatingEvent | BinaryEvent | ImplicitEvent | RankingEvent,
                  Field(discriminator="kind")]


class BatchRequest(Strict):
    events: Annotated[list[Event], Field(min_length=1, max_length=MAX_BATCH)]


class EventResult(BaseModel):
    id: int
    status: Literal["created", "duplicate"]


class BatchResult(BaseModel):
    results: list[EventResult]
    created: int
    duplicates: int


class ErrorBody(BaseModel):
    """Every 4xx body: a sentence, the bad field's path when there is one, and details."""

    message: str
    field: str | None = None
    detail: list[dict[str, Any]] | str | None = None
