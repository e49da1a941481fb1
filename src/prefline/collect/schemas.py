"""JSON shapes of the ingest API (they are the OpenAPI schema).

Feedback events are a union told apart by ``kind``; pydantic reports a bad field by its
path (``events[3].choice``), which the API returns in its 422 body.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    field_validator,
    model_validator,
)

from prefline.base.errors import PreflineError
from prefline.base.text import check_json, check_text, printable
from prefline.store.models import IMPLICIT_SIGNALS


def _text(value: str) -> str:
    # Lone surrogates and NUL poison the store (base/text.py); refuse them here as a 422.
    # Printable text has neither (surrogates and NUL are not printable): one C-speed test
    # spares the per-character scan on the hot path of the ingest API.
    if value.isprintable():
        return value
    try:
        return check_text(value, field="text")
    except PreflineError as exc:
        raise ValueError(exc.message) from None


def _name(value: str) -> str:
    """An identifier (user, idempotency key, criterion): clean text, NFC-normalised."""
    return unicodedata.normalize("NFC", _text(value))


def _keys_and_tags(value: Any) -> Any:
    """Refuse bad characters in object keys before pydantic sees them.

    Pydantic puts a bad key into the error's location, and a lone surrogate there would make
    the 422 itself unencodable; values are checked by their own field's validator, which
    names the field.
    """
    def walk(node: Any, path: tuple[Any, ...]) -> None:
        # The path is spelled out only for an error: on the hot path it cost more than the
        # checks (printable() of every key of every event).
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and not key.isprintable():  # printable keys are clean
                    _checked(key, f"{_spelled(path)} key '{printable(key)}'")
                walk(child, (*path, key))
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, (*path, [i]))

    walk(value, ())
    return value


def _spelled(path: tuple[Any, ...]) -> str:
    """``a.b[2].c`` for the path ``("a", "b", [2], "c")`` (list indexes as one-item lists)."""
    out = ""
    for part in path:
        if isinstance(part, list):
            out += f"[{part[0]}]"
        else:
            out = f"{out}.{printable(str(part))}" if out else printable(str(part))
    return out


def _checked(text: str, where: str) -> None:
    try:
        check_text(text, field=where.lstrip(". ") or "body")
    except PreflineError as exc:
        raise ValueError(str(exc)) from None


def _plain_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # Python's JSON parser lets NaN/Infinity through; PostgreSQL's json type does not.
    if value is not None:
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise ValueError("numbers must be finite (no NaN or Infinity)") from None
        try:
            check_json(value, field="")
        except PreflineError as exc:  # exc.field is the path inside the object (".a.b[2]")
            raise ValueError(f"{(exc.field or '').lstrip('.')}: {exc.message}") from None
    return value


Str = Annotated[str, AfterValidator(_text)]
Name = Annotated[str, AfterValidator(_name)]
JsonObject = Annotated[dict[str, Any] | None, AfterValidator(_plain_json)]
Id = Annotated[int, Field(ge=1, le=2**62)]
ShortText = Annotated[Str, Field(min_length=1, max_length=200)]
ShortName = Annotated[Name, Field(min_length=1, max_length=200)]
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID,
                            description="A row id (ids beyond 64-bit integers cannot exist).")]
"""A row id in a URL path: out-of-range ids are a 422, never an integer overflow in the driver."""
RESERVED_USERS = ("implicit",)
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

    _clean = model_validator(mode="before")(_keys_and_tags)


class LogResult(BaseModel):
    prompt_id: int
    response_ids: list[int]


class EventBase(Strict):
    idempotency_key: Annotated[Name, Field(min_length=1, max_length=90)] | None = Field(
        None, description="Retries with the same key and body never create a second row; the "
        "same key with another body is a 409. Keys are per API key (NFC-normalised).")
    user: Annotated[Name, Field(min_length=1, max_length=80)] | None = Field(
        None, description="Pseudonymous end-user id (NFC-normalised; never an e-mail address), "
        "kept as the feedback's user_id; explicit feedback is stored under one annotator per "
        f"user. Reserved: {', '.join(RESERVED_USERS)}.")
    segment: Annotated[dict[ShortName, ShortText], Field(max_length=20)] | None = Field(
        None, description="Declared segment attributes of the end user, e.g. "
        '{"style": "concise"}: string keys to string values.')
    rationale: Annotated[Str, Field(max_length=20_000)] | None = None
    _clean = model_validator(mode="before")(_keys_and_tags)
    time_spent_ms: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = Field(
        None, description="Time the end user spent, as measured by the client (the API cannot "
        "see the user; the annotation UI measures it server-side).")

    @field_validator("user")
    @classmethod
    def _not_reserved(cls, user: str | None) -> str | None:
        if user is not None and user.casefold() in RESERVED_USERS:
            raise ValueError(f"user {user!r} is reserved for implicit signals; use another id")
        if user is not None and "@" in user:  # the store keeps pseudonymous ids only
            raise ValueError("user looks like an e-mail address; send a pseudonymous user id")
        return user


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
    scores: Annotated[dict[ShortName, Annotated[float, Field(ge=-1e6, le=1e6)]],
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


# A fixed message: pydantic's own would quote the bad tag, and a lone surrogate there would
# make the 422 itself unencodable.
Event = Annotated[PairwiseEvent | RatingEvent | BinaryEvent | ImplicitEvent | RankingEvent,
                  Discriminator("kind", custom_error_type="union_tag_invalid",
                                custom_error_message="'kind' must be one of pairwise, rating, "
                                "binary, implicit, ranking")]


class BatchRequest(Strict):
    events: Annotated[list[Event], Field(min_length=1, max_length=MAX_BATCH)]

    _clean = model_validator(mode="before")(_keys_and_tags)


class EventResult(BaseModel):
    id: int
    status: Literal["created", "duplicate"]
    """``duplicate``: this API key stored the same event under this idempotency key before."""


class BatchResult(BaseModel):
    results: list[EventResult]
    created: int
    duplicates: int


class ErrorBody(BaseModel):
    """Every 4xx body: a sentence, the bad field's path when there is one, and details."""

    message: str
    field: str | None = None
    detail: list[dict[str, Any]] | str | None = None
