"""Anthropic HH-RLHF transcripts: ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` → chat turns."""

from __future__ import annotations

import re

from prefline.formats.examples import Messages

# A speaker tag starts a turn only after a blank line, as in the released HH-RLHF files;
# "Human:" inside a turn's text (quoted dialogue) is left alone.
_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def is_transcript(text: object) -> bool:
    """True for a string in HH transcript form (it opens with a Human or Assistant turn)."""
    # startswith first: a cheap rejection for the common plain-text case.
    return isinstance(text, str) and text.startswith("\n\n") and _TURN.match(text) is not None


def parse_transcript(text: str, *, keep_empty_reply: bool = False) -> Messages:
    """Split a transcript into ``[{"role": "user"|"assistant", "content": str}, ...]``.

    Turn text is stripped of surrounding whitespace. A trailing empty ``Assistant:`` tag is
    the HH way to write a prompt awaiting a reply, so it is dropped unless
    ``keep_empty_reply`` (in chosen/rejected it is a real, empty answer). Raises ValueError
    when the string does not open with a speaker tag.
    """
    parts = _TURN.split(text)
    if parts[0].strip():
        raise ValueError("an HH transcript must start with '\\n\\nHuman:' or '\\n\\nAssistant:'")
    messages = [
        {"role": _ROLES[parts[i]], "content": parts[i + 1].strip()}
        for i in range(1, len(parts), 2)
    ]
    if not keep_empty_reply and messages and messages[-1]["role"] == "assistant" \
            and not messages[-1]["content"]:
        messages.pop()
    return messages


def to_transcript(messages: Messages) -> str:
    """Inverse of :func:`parse_transcript` for user/assistant turns."""
    names = {"user": "Human", "assistant": "Assistant", "system": "Human"}
    return "".join(f"\n\n{names.get(m['role'], 'Human')}: {m['content']}" for m in messages)
