"""The bundled prompt set used by ``prefline demo``: written for this project.

``prompts.jsonl`` holds one prompt per line, ``{"id", "prompt", "category", "split"}``, in
seven categories (coding, everyday_advice, factual, writing, maths, should_refuse,
should_not_refuse). Each category is split by the sha256 of the prompt text (see
:func:`split_rule`), so the split is deterministic and never depends on file order: the first
quarter in hash order is ``eval``, the next eighth ``dev``, the rest ``train`` (48 prompts a
category: 12 eval, 6 dev, 30 train). Training only ever sees ``train``; settings are tuned on
``dev``; ``eval`` is scored once per released configuration. ``prompts.manifest.json``
records the rule and a content hash per split (:func:`split_manifest`), and a test checks the
file against both.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash

CATEGORIES = (
    "coding", "everyday_advice", "factual", "writing", "maths", "should_refuse",
    "should_not_refuse",
)
SPLITS = ("train", "dev", "eval")
RULE = ("per category, prompts sorted by sha256 of their UTF-8 text: the first len//4 are "
        "eval, the next len//8 dev, the rest train")
MANIFEST = "prompts.manifest.json"


def split_rule(rows: list[dict[str, Any]]) -> dict[str, str]:
    """``{id: split}`` by :data:`RULE`: a prompt's split depends only on the prompts of its
    category, never on file order, so adding a category leaves the others' splits alone."""
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_cat.setdefault(r["category"], []).append(r)
    out = {}
    for members in by_cat.values():
        ranked = sorted(members, key=lambda r: hashlib.sha256(r["prompt"].encode()).hexdigest())
        n_eval, n_dev = len(ranked) // 4, len(ranked) // 8
        for k, r in enumerate(ranked):
            out[r["id"]] = "eval" if k < n_eval else "dev" if k < n_eval + n_dev else "train"
    return out


def split_manifest(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule and, per split, its size and the content hash of its ``[id, category,
    prompt]`` rows in id order: what ``prompts.manifest.json`` records."""
    splits = {}
    for name in SPLITS:
        part = sorted((r["id"], r["category"], r["prompt"]) for r in rows if r["split"] == name)
        splits[name] = {"n": len(part), "sha256": content_hash([list(p) for p in part])}
    return {"file": "prompts.jsonl", "rule": RULE, "splits": splits}


def load_manifest() -> dict[str, Any]:
    """The recorded ``prompts.manifest.json``."""
    data: dict[str, Any] = json.loads(resources.files(__name__).joinpath(MANIFEST).read_text())
    return data


def load_prompts(split: str | None = None) -> list[dict[str, Any]]:
    """The bundled prompts, in file order; ``split`` ('train' | 'dev' | 'eval' | None: all)."""
    if split is not None and split not in SPLITS:
        raise PreflineError(f"unknown prompt split {split!r}; expected one of {SPLITS}")
    text = resources.files(__name__).joinpath("prompts.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [r for r in rows if split is None or r["split"] == split]
