"""Text hygiene helpers (issue 16): what may enter the store, with errors naming field and position."""

from __future__ import annotations

import pytest

from prefline.base.errors import PreflineError
from prefline.base.text import check_json, check_optional, check_text, decode_utf8, strip_bom


def test_lone_surrogate_rejected_naming_field_and_position() -> None:
    with pytest.raises(PreflineError) as exc:
        check_text("ab\ud800c", field="rationale")
    msg = str(exc.value)
    assert "field 'rationale'" in msg and "character 2" in msg and "U+D800" in msg
    msg.encode("utf-8")  # the message itself must be encodable


def test_nul_rejected_and_nfc_applied_only_when_asked() -> None:
    with pytest.raises(PreflineError, match="NUL"):
        check_text("a\x00", field="user")
    decomposed = "e\u0301"
    assert check_text(decomposed, field="x") == decomposed
    assert check_text(decomposed, field="x", nfc=True) == "\u00e9"
    assert check_optional(None, field="x") is None


def test_json_keys_and_nested_values_checked() -> None:
    with pytest.raises(PreflineError) as exc:
        check_json({"c\ud800": 1}, field="scores")
    msg = str(exc.value)
    assert "scores" in msg and "\\ud800" in msg and "character 1" in msg
    msg.encode("utf-8")
    with pytest.raises(PreflineError, match=r"messages\[1\]\.content"):
        check_json([{"content": "ok"}, {"content": "x\udfff"}], field="messages")
    assert check_json({"e\u0301": [1, "ok"]}, field="s", nfc_keys=True) == {"\u00e9": [1, "ok"]}


def test_decode_utf8_strips_bom_and_names_the_bad_line() -> None:
    assert decode_utf8(b"\xef\xbb\xbf{\"a\": 1}\n") == '{"a": 1}\n'
    assert strip_bom("\ufeffx") == "x"
    with pytest.raises(PreflineError) as exc:
        decode_utf8(b"ok\nfine\nab\xffcd\n", path="f.jsonl")
    assert "line 3" in str(exc.value) and "byte 2" in str(exc.value) and "f.jsonl" in str(exc.value)
