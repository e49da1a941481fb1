"""Files of the RLAIF loop: prompt lists in, generations and labelled pairs out.

- prompts (read by ``prefline generate`` and ``prefline eval policy``): JSONL with ``prompt``
  (text or chat messages) and optional ``id``/``tags``/``category``, plain text with one
  prompt per line, or ``bundled:train|eval``;
- generations (written by ``prefline generate``, read by ``prefline judge``): JSONL, one
  object per prompt: ``{"prompt": messages, "responses": [...], "tags", "model", "gen_params"}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.data import load_prompts
from prefline.formats.examples import Messages, as_messages
from prefline.formats.jsonl import read_jsonl
from prefline.formats.jsonl import write_jsonl as atomic_write_jsonl
from prefline.generate.store import Generation

BUNDLED = "bundled:"


def _checked_prompt(value: Any, path: Path, line: int) -> list[dict[str, str]]:
    ok = isinstance(value, str) and value.strip() or (
        isinstance(value, list) and value and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in value))
    if not ok:
        raise PreflineError("expected a non-empty string or a list of {role, content} messages",
                            path=str(path), line=line, field="prompt")
    return as_messages(value)


def _tags(rec: dict[str, Any], path: Path, line: int) -> tuple[str, ...]:
    tags = rec.get("tags") or []
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise PreflineError("expected a list of strings", path=str(path), line=line, field="tags")
    if isinstance(rec.get("category"), str):
        tags = [*tags, rec["category"]]
    return tuple(dict.fromkeys(tags))


@dataclass(frozen=True)
class PromptRow:
    """One prompt to sample from: its id (the file's ``id``, else the line number), the chat
    messages, its category (None when the file has none) and its tags (category included)."""

    id: str
    prompt: Messages
    category: str | None = None
    tags: tuple[str, ...] = ()


def read_prompt_rows(source: str | Path) -> list[PromptRow]:
    """Prompts from ``bundled:train`` / ``bundled:eval`` (the set shipped with prefline), a
    JSONL file (``.jsonl``/``.json``, or a first line starting with ``{``) whose lines are
    objects with ``prompt`` (text or messages; optional ``id``, ``category``, ``tags``) or
    bare JSON strings, or a plain-text file with one prompt per line."""
    if str(source).startswith(BUNDLED):
        return [PromptRow(str(r["id"]), as_messages(r["prompt"]), r.get("category"),
                          (r["category"],) if r.get("category") else ())
                for r in load_prompts(str(source)[len(BUNDLED):])]
    path = Path(source)
    if not path.is_file():
        raise PreflineError("prompt file not found", path=str(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PreflineError(f"cannot read prompts file ({exc})", path=str(path)) from None
    first = next((ln for ln in lines if ln.strip()), None)
    if first is None:
        raise PreflineError("prompts file is empty", path=str(path))
    if path.suffix not in (".jsonl", ".json") and not first.lstrip().startswith("{"):
        return [PromptRow(str(no), as_messages(ln.strip()))
                for no, ln in enumerate(lines, start=1) if ln.strip()]
    out = []
    for no, rec in read_jsonl(path):
        rec = {"prompt": rec} if isinstance(rec, str) else rec
        if not isinstance(rec, dict) or "prompt" not in rec:
            raise PreflineError("expected an object with a 'prompt' (text or messages)",
                                path=str(path), line=no, field="prompt")
        category = rec.get("category") if isinstance(rec.get("category"), str) else None
        out.append(PromptRow(str(rec.get("id", no)), _checked_prompt(rec["prompt"], path, no),
                             category, _tags(rec, path, no)))
    return out


def read_prompts(source: str | Path) -> list[Generation]:
    """:func:`read_prompt_rows` as Generations with no responses yet (tags kept)."""
    return [Generation(prompt=r.prompt, responses=[], tags=r.tags)
            for r in read_prompt_rows(source)]


def read_generations(path: str | Path) -> list[Generation]:
    """Read a ``prefline generate`` output file (each line needs ``prompt`` and ``responses``)."""
    path = Path(path)
    out = []
    for no, rec in read_jsonl(path):
        if not isinstance(rec, dict):
            raise PreflineError("expected a JSON object", path=str(path), line=no)
        responses = rec.get("responses")
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            raise PreflineError("expected a list of response strings", path=str(path), line=no,
                                field="responses")
        gp = rec.get("gen_params")
        out.append(Generation(prompt=_checked_prompt(rec.get("prompt"), path, no),
                              responses=responses, tags=_tags(rec, path, no),
                              model=rec.get("model"), gen_params=gp if isinstance(gp, dict) else None))
    if not out:
        raise PreflineError("no generations in file", path=str(path))
    return out


def generation_record(g: Generation) -> dict[str, Any]:
    return {"prompt": g.prompt, "responses": g.responses, "tags": list(g.tags),
            "model": g.model, "gen_params": g.gen_params}


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records atomically (temp file + rename: a crash never leaves half a file);
    returns how many were written. The output folder must exist."""
    path = Path(path)
    if not path.parent.exists():
        raise PreflineError(f"output folder {path.parent} does not exist", path=str(path))
    rows = list(records)
    atomic_write_jsonl(path, rows)
    return len(rows)
