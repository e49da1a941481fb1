"""One record (a dict from any container) → one typed example, validated field by field.

Record shapes, told apart by their keys:

- pairwise: ``prompt``/``chosen``/``rejected`` as strings or chat-message lists; without
  ``prompt`` (TRL's implicit-prompt shape, or HH transcripts) the shared message prefix of
  ``chosen`` and ``rejected`` is the prompt. Optional ``tie`` (bool) and ``strength``.
- unpaired (KTO): ``prompt``/``completion``/``label`` (bool).
- ranking: ``prompt``/``responses``/``order`` (indices into ``responses``, best first).
- rating: ``prompt``/``response``/``scores`` (``{criterion: number}``).

Every shape also takes ``tags`` (list of strings), ``annotator``/``annotator_kind``, and the
personal-data fields ``user`` (a pseudonymous id string) and ``segment`` (an object of
string attributes, e.g. ``{"style": "concise"}``).
Any problem raises :class:`BadRecord` (a PreflineError) naming the file, line and field.
"""

from __future__ import annotations

import functools
import hashlib
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from prefline.base.errors import PreflineError
from prefline.base.text import check_json, check_text, printable
from prefline.formats.examples import (
    Messages,
    PreferencePair,
    RankingExample,
    RatingExample,
    UnpairedExample,
)
from prefline.formats.hh import is_transcript, parse_transcript

Example = PreferencePair | UnpairedExample | RankingExample | RatingExample
ROLES = ("system", "user", "assistant", "tool")
"""Chat roles a message may have (the roles chat templates know)."""
SHAPES = "prompt/chosen/rejected, prompt/completion/label, prompt/responses/order or prompt/response/scores"


class BadRecord(PreflineError):
    """One record is invalid; the rest of its file may still be usable (an importer can
    reject it and go on). ``reason`` is the sentence without the file and line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        super().__init__(message, path=path, line=line, field=field)
        self.message = message

    @property
    def reason(self) -> str:
        """What is wrong, naming the field: for a rejects file that already has the line."""
        return f"field '{self.field}': {self.message}" if self.field else self.message


class IdenticalPair(BadRecord):
    """A pair whose chosen and rejected are the same: no preference to learn from."""


@dataclass(frozen=True)
class Where:
    """Where a record came from, for error messages: file and 1-based line (or row)."""

    path: str
    line: int | None = None

    def error(self, message: str, field: str | None = None) -> BadRecord:
        return BadRecord(message, path=self.path, line=self.line, field=field)


@dataclass(frozen=True)
class Record:
    """A validated example plus who judged it (None: the importer's default annotator)."""

    example: Example
    line: int | None
    annotator: str | None = None
    annotator_kind: str | None = None


_quote = json.encoder.encode_basestring  # JSON string literal, non-ASCII kept (C speed)


def messages_json(messages: Messages) -> str:
    """``hashing.canonical_json(messages)`` for ``{role, content}`` messages, built directly:
    the general sorted-keys encoder was a third of import time at 10⁵ records."""
    if len(messages) == 1:  # the commonest prompt: one user turn (no generator, no join)
        m = messages[0]
        return f'[{{"content":{_quote(m["content"])},"role":{_quote(m["role"])}}}]'
    return "[" + ",".join(f'{{"content":{_quote(m["content"])},"role":{_quote(m["role"])}}}'
                          for m in messages) + "]"


def prompt_key(messages: Messages) -> str:
    """The content hash that identifies a prompt everywhere (store, splits, snapshots);
    equals ``hashing.content_hash(messages)``."""
    return hashlib.sha256(messages_json(messages).encode("utf-8")).hexdigest()


def _messages(value: Any, where: Where, field: str) -> Messages:
    if not isinstance(value, list) or not value:
        raise where.error("expected a non-empty list of chat messages", field)
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) \
                or not isinstance(m.get("content"), str):
            raise where.error(f"message {i} must be an object with string 'role' and 'content'", field)
        if m["role"] not in ROLES:
            raise where.error(f"message {i} has role {printable(m['role'])!r}; expected one of "
                              f"{', '.join(ROLES)}", field)
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _turns(value: Any, where: Where, field: str, *, as_reply: bool) -> Messages:
    """A text or message-list field as messages; plain text is a reply or a user prompt."""
    if isinstance(value, str):
        if is_transcript(value):
            msgs = parse_transcript(value, keep_empty_reply=as_reply)
            if not msgs:
                raise where.error("the transcript has no turns", field)
            return msgs
        if not value.strip():  # empty turns inside message lists stay: HH-RLHF has empty replies
            raise where.error("is empty; expected some text", field)
        return [{"role": "assistant" if as_reply else "user", "content": value}]
    if isinstance(value, list):
        return _messages(value, where, field)
    kind = type(value).__name__ if value is not None else "null"
    raise where.error(f"expected a string or a list of chat messages, got {kind}", field)


def _require(rec: dict[str, Any], field: str, where: Where) -> Any:
    if field not in rec or rec[field] is None:
        raise where.error("missing required field", field)
    return rec[field]


def _split_reply(prompt: Messages, reply: Messages, where: Where, field: str) -> tuple[Messages, str]:
    """``prompt + reply`` → (prompt messages, final assistant text)."""
    full = prompt + reply
    if full[-1]["role"] != "assistant":
        raise where.error("the final message must be an assistant turn", field)
    if len(full) < 2:
        raise where.error("missing required field", "prompt")
    return full[:-1], full[-1]["content"]


def _tags(rec: dict[str, Any], where: Where) -> tuple[str, ...]:
    tags = rec.get("tags")
    if tags is None:
        return ()
    if isinstance(tags, str):
        return (tags,)
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise where.error("expected a list of strings", "tags")
    return tuple(tags)


def _prompt(rec: dict[str, Any], where: Where) -> Messages:
    return _turns(_require(rec, "prompt", where), where, "prompt", as_reply=False)


def _after(prompt: Messages, reply: Messages) -> Messages:
    """``prompt + reply``, unless ``reply`` already repeats the prompt (datasets that ship
    both a prompt column and full conversations)."""
    return reply if prompt and reply[:len(prompt)] == prompt and len(reply) > len(prompt) \
        else prompt + reply


def _plain_pair(rec: dict[str, Any], raw_c: str, raw_r: str, where: Where) -> PreferencePair | None:
    """Fast path for the commonest shape: three plain strings, no transcripts, no extras."""
    prompt = rec.get("prompt")
    if not isinstance(prompt, str) or len(rec) != 3 or raw_c == raw_r \
            or not (prompt.strip() and raw_c.strip() and raw_r.strip()) \
            or is_transcript(prompt) or is_transcript(raw_c) or is_transcript(raw_r):
        return None
    msgs = [{"role": "user", "content": prompt}]
    return PreferencePair(prompt=msgs, chosen=raw_c, rejected=raw_r,
                          prompt_key=_user_prompt_key(prompt))


@functools.lru_cache(maxsize=1024)
def _user_prompt_key(text: str) -> str:
    """``prompt_key`` of a one-user-turn prompt; files list a prompt's pairs together, so
    a small cache hashes each prompt about once."""
    return prompt_key([{"role": "user", "content": text}])


def _divergence(chosen: Messages, rejected: Messages) -> str:
    """Why a pair whose conversations part before the final reply is refused, naming the
    first turn (1-based, counting every message) where they part. Public HH-RLHF files
    hold such pairs: there is no single prompt that both replies answer."""
    turn = next((i for i, (c, r) in enumerate(zip(chosen, rejected, strict=False)) if c != r),
                min(len(chosen), len(rejected))) + 1
    lengths = "" if len(chosen) == len(rejected) else \
        f"; chosen has {len(chosen)} turns, rejected {len(rejected)}"
    return f"chosen and rejected conversations differ before the final assistant turn (turn {turn}{lengths})"


def _pairwise(rec: dict[str, Any], where: Where) -> PreferencePair:
    raw_c, raw_r = _require(rec, "chosen", where), _require(rec, "rejected", where)
    if isinstance(raw_c, str) and isinstance(raw_r, str):
        fast = _plain_pair(rec, raw_c, raw_r, where)
        if fast is not None:
            return fast
    prompt = _prompt(rec, where) if rec.get("prompt") is not None else []
    if not prompt and not all(isinstance(v, list) or is_transcript(v) for v in (raw_c, raw_r)):
        # Plain strings with no prompt: neither TRL's implicit shape nor an HH transcript.
        raise where.error("missing required field", "prompt")
    chosen = _after(prompt, _turns(raw_c, where, "chosen", as_reply=True))
    rejected = _after(prompt, _turns(raw_r, where, "rejected", as_reply=True))
    if chosen == rejected:
        raise IdenticalPair("chosen is identical to rejected", path=where.path, line=where.line,
                            field="chosen")
    k = 0  # shared prefix = prompt (TRL's implicit-prompt rule)
    while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
        k += 1
    if chosen[:k] != chosen[:-1] or rejected[:k] != rejected[:-1]:
        raise where.error(_divergence(chosen, rejected), "rejected")
    shared, chosen_text = _split_reply(chosen[:k], chosen[k:], where, "chosen")
    _, rejected_text = _split_reply(chosen[:k], rejected[k:], where, "rejected")
    if chosen_text == rejected_text:
        raise IdenticalPair("chosen is identical to rejected", path=where.path, line=where.line,
                            field="chosen")
    tie = rec.get("tie", False)
    if not isinstance(tie, bool):
        raise where.error("expected true or false", "tie")
    strength = rec.get("strength")
    if strength is not None and (isinstance(strength, bool) or not isinstance(strength, int | float)):
        raise where.error("expected a number", "strength")
    return PreferencePair(
        prompt=shared, chosen=chosen_text, rejected=rejected_text, tie=tie,
        strength=None if strength is None else float(strength), tags=_tags(rec, where),
        prompt_key=prompt_key(shared),
    )


def _unpaired(rec: dict[str, Any], where: Where) -> UnpairedExample:
    prompt = _prompt(rec, where)
    reply = _turns(_require(rec, "completion", where), where, "completion", as_reply=True)
    prompt, text = _split_reply(prompt, reply, where, "completion")
    label = _require(rec, "label", where)
    if not isinstance(label, bool):
        raise where.error(f"expected true or false, got {label!r}", "label")
    return UnpairedExample(prompt=prompt, completion=text, label=label, tags=_tags(rec, where),
                           prompt_key=prompt_key(prompt))


def _ranking(rec: dict[str, Any], where: Where) -> RankingExample:
    prompt = _prompt(rec, where)
    responses = _require(rec, "responses", where)
    if not isinstance(responses, list) or len(responses) < 2:
        raise where.error("expected a list of at least two responses", "responses")
    texts = [_split_reply(prompt, _turns(r, where, "responses", as_reply=True), where, "responses")[1]
             for r in responses]
    if len(set(texts)) != len(texts):
        raise where.error("responses must be distinct", "responses")
    order = _require(rec, "order", where)
    if not isinstance(order, list) or sorted(order) != list(range(len(texts))) \
            or any(isinstance(i, bool) for i in order):
        raise where.error(f"expected a permutation of 0..{len(texts) - 1} (best first)", "order")
    return RankingExample(prompt=prompt, responses=tuple(texts[i] for i in order),
                          tags=_tags(rec, where), prompt_key=prompt_key(prompt))


def _name(text: str) -> str:
    """An identifier (criterion, annotator) in NFC, so that the same name typed on two
    keyboards is one name (content text is kept byte for byte)."""
    return unicodedata.normalize("NFC", text)


def _rating(rec: dict[str, Any], where: Where) -> RatingExample:
    prompt = _prompt(rec, where)
    reply = _turns(_require(rec, "response", where), where, "response", as_reply=True)
    prompt, text = _split_reply(prompt, reply, where, "response")
    scores = _require(rec, "scores", where)
    if not isinstance(scores, dict) or not scores or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in scores.items()):
        raise where.error("expected a non-empty object of {criterion: number}", "scores")
    return RatingExample(prompt=prompt, response=text,
                         scores={_name(k): float(v) for k, v in scores.items()},
                         tags=_tags(rec, where), prompt_key=prompt_key(prompt))


def record_shape(rec: dict[str, Any]) -> str | None:
    """``pairwise``/``unpaired``/``ranking``/``rating`` from the record's keys, else None."""
    if "chosen" in rec or "rejected" in rec:
        return "pairwise"
    if "completion" in rec and "label" in rec:
        return "unpaired"
    if "responses" in rec:
        return "ranking"
    if "response" in rec and "scores" in rec:
        return "rating"
    return None


_PARSERS: dict[str, Callable[[dict[str, Any], Where], Example]] = {"pairwise": _pairwise, "unpaired": _unpaired, "ranking": _ranking, "rating": _rating}


def _strings(value: Any, out: list[str]) -> bool:
    """Append every key and string of a JSON-like ``value`` to ``out``; False when it holds
    anything else than dicts with string keys, lists, strings, numbers, booleans and None.
    Concatenating is safe: Python strings never pair two lone surrogates into one character."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not _strings(item, out):
                return False
            out.append(key)
    elif isinstance(value, list):
        return all(_strings(item, out) for item in value)
    elif not (value is None or isinstance(value, int | float)):  # bool is an int
        return False
    return True


def check_storable(rec: dict[str, Any], where: Where) -> None:
    """Refuse text the store cannot hold (lone surrogates, NUL), naming the field.

    One C-speed check decides for the whole record (its strings joined and encoded once;
    a JSON encode of the record when it holds other types); only a bad one is walked field
    by field (``prefline.base.text``) to say where."""
    strings: list[str] = []
    nul = "\x00"
    try:  # the commonest record: string fields with string values (TypeError otherwise)
        text = "".join(rec) + "".join(rec.values())
    except TypeError:
        if _strings(rec, strings):
            text = "".join(strings)
        else:
            text = json.dumps(rec, ensure_ascii=False, default=str)
            nul = "\\u0000"  # NUL, as json writes it
    try:
        text.encode("utf-8")
        clean = nul not in text
    except UnicodeEncodeError:
        clean = False
    if clean:
        return
    try:
        for key, value in rec.items():
            if isinstance(key, str):
                check_text(key, field=f"name of field '{printable(key)}'")
            check_json(value, field=str(key))
    except PreflineError as exc:
        raise where.error(exc.message, exc.field) from None


MAX_USER_ID = 200
"""The longest user id the store keeps (``feedback.user_id``)."""


def user_id(value: Any, where: Where, field: str = "user") -> str | None:
    """A record's pseudonymous user id: a non-empty string without ``@`` (an e-mail address
    is not pseudonymous), at most :data:`MAX_USER_ID` characters; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_USER_ID:
        raise where.error(f"expected a non-empty string of at most {MAX_USER_ID} characters "
                          "(a pseudonymous user id)", field)
    if "@" in value:
        raise where.error("looks like an e-mail address; expected a pseudonymous user id", field)
    return value


def segment_attrs(value: Any, where: Where, field: str = "segment") -> dict[str, str]:
    """A record's segment: an object of non-empty string keys to string values ({} when
    absent); names are NFC like annotator names, values are kept as given."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and k.strip() and isinstance(v, str) for k, v in value.items()):
        raise where.error('expected an object of string attributes, e.g. {"style": "concise"}',
                          field)
    return {_name(k): v for k, v in value.items()}


def with_person(example: Example, rec: dict[str, Any], where: Where) -> Example:
    """``example`` carrying the record's ``user`` and ``segment`` (unchanged without them)."""
    if rec.get("user") is None and rec.get("segment") is None:
        return example
    return replace(example, user=user_id(rec.get("user"), where),
                   segment=segment_attrs(rec.get("segment"), where))


def parse_record(rec: Any, where: Where) -> Record:
    """Validate one raw record and return it as a typed example with its annotator."""
    if not isinstance(rec, dict):
        raise where.error(f"expected a JSON object, got {type(rec).__name__}")
    check_storable(rec, where)
    shape = record_shape(rec)
    if shape is None:
        raise where.error(f"unknown record format (fields {sorted(rec)}); expected {SHAPES}")
    example = with_person(_PARSERS[shape](rec, where), rec, where)
    annotator, kind = rec.get("annotator"), rec.get("annotator_kind")
    for field, value in (("annotator", annotator), ("annotator_kind", kind)):
        if value is not None and not isinstance(value, str):
            raise where.error("expected a string", field)
    return Record(example=example, line=where.line,
                  annotator=None if annotator is None else _name(annotator), annotator_kind=kind)
