"""Text hygiene at every door: what may enter the store, and in which form.

Every text that reaches the store (API bodies, imported files, judges' outputs, form fields)
passes through here first, because one bad character poisons everything downstream: a lone
surrogate (``"\\ud800"``, legal in a Python ``str`` and in JSON, but not encodable as UTF-8)
is stored fine by SQLite and then makes every snapshot, audit and export of the whole store
crash; a NUL character is refused by PostgreSQL in text and JSON columns. So:

- :func:`check_text` rejects lone surrogates and NUL with a :class:`PreflineError` naming the
  field and the character position (0-based, in code points), and returns the text unchanged,
  or NFC-normalised when ``nfc=True``.
- Identifiers (criterion names, user names, idempotency keys, snapshot names) are NFC-normalised,
  so that the same name typed on two keyboards (``"é"`` precomposed or ``"e"`` + combining
  accent) is one name. Content (prompts, responses, rationales) is stored exactly as given:
  its bytes are what content hashes and training see.
- :func:`check_json` applies :func:`check_text` to every string and key of a JSON value.
- :func:`decode_utf8` decodes a file's bytes, strips a UTF-8 BOM and reports invalid UTF-8 on
  the right line; :func:`strip_bom` does the BOM part for text already decoded.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from prefline.base.errors import PreflineError

BOM = "\ufeff"


def printable(text: str, limit: int = 60) -> str:
    """``text`` safe to put in an error message (surrogates and controls escaped), shortened."""
    short = text if len(text) <= limit else text[:limit] + "…"
    return "".join(ch if ch.isprintable() and not _is_surrogate(ch) else ascii(ch)[1:-1]
                   for ch in short)


def _is_surrogate(ch: str) -> bool:
    return 0xD800 <= ord(ch) <= 0xDFFF


def bad_char(text: str) -> tuple[int, str] | None:
    """``(position, reason)`` of the first character the store cannot hold, else None."""
    for pos, ch in enumerate(text):
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            return pos, f"a lone surrogate U+{code:04X}, which is not valid Unicode text"
        if code == 0:
            return pos, "a NUL character (U+0000)"
    return None


def check_text(value: str, *, field: str, nfc: bool = False, path: str | None = None,
               line: int | None = None) -> str:
    """``value`` if every character can be stored (NFC-normalised when ``nfc``); else raise.

    Raises PreflineError naming ``field`` (escaped, so the message itself is always
    encodable) and the 0-based character position of the first bad character.
    """
    if not isinstance(value, str):
        raise PreflineError(f"expected text, got {type(value).__name__}", path=path, line=line,
                            field=printable(field))
    found = bad_char(value)
    if found is not None:
        pos, reason = found
        raise PreflineError(f"character {pos} is {reason}; send valid UTF-8 text",
                            path=path, line=line, field=printable(field))
    return unicodedata.normalize("NFC", value) if nfc else value


def check_optional(value: str | None, *, field: str, nfc: bool = False, path: str | None = None,
                   line: int | None = None) -> str | None:
    """:func:`check_text` for an optional value (None passes through)."""
    if value is None:
        return None
    return check_text(value, field=field, nfc=nfc, path=path, line=line)


def check_json(value: Any, *, field: str, nfc_keys: bool = False, path: str | None = None,
               line: int | None = None) -> Any:
    """``value`` with every string and key checked by :func:`check_text` (keys NFC when asked).

    The field named in an error is the JSON path, e.g. ``scores.helpful`` or ``messages[2].content``.
    """
    if isinstance(value, str):
        return check_text(value, field=field, path=path, line=line)
    if isinstance(value, list):
        return [check_json(v, field=f"{field}[{i}]", nfc_keys=nfc_keys, path=path, line=line)
                for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, v in value.items():
            if isinstance(key, str):
                key = check_text(key, field=f"{field} key '{printable(key)}'", nfc=nfc_keys, path=path, line=line)
            out[key] = check_json(v, field=f"{field}.{key}", nfc_keys=nfc_keys, path=path, line=line)
        return out
    return value


def strip_bom(text: str) -> str:
    """``text`` without a leading UTF-8 byte-order mark (editors on Windows add one)."""
    return text[1:] if text.startswith(BOM) else text


def decode_utf8(data: bytes, *, path: str | None = None) -> str:
    """``data`` decoded as UTF-8 without a BOM; invalid bytes reported with their line and column."""
    try:
        return strip_bom(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1)
        raise PreflineError(f"byte {col} of the line (0x{data[exc.start]:02x}) is not valid UTF-8; "
                            "save the file as UTF-8", path=path, line=line) from None
