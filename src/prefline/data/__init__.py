"""The bundled prompt set used by ``prefline demo``: written for this project.

``prompts.jsonl`` holds one prompt per line, ``{"id", "prompt", "category", "split"}``, in
seven categories (coding, everyday_advice, factual, writing, maths, should_refuse,
should_not_refuse). Each category is split 75/25 into ``train`` and ``eval`` by the sha256 of
the prompt text, so the split is deterministic and never depends on file order; the demo
trains only on ``train`` prompts and evaluates only on ``eval`` prompts.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from prefline.base.errors import PreflineError

CATEGORIES = (
    "coding", "everyday_advice", "factual", "writing", "maths", "should_refuse",
    "should_not_refuse",
)
SPLITS = ("train", "eval")


def load_prompts(split: str | None = None) -> list[dict[str, Any]]:
    """The bundled prompts, in file order; ``split`` ('train' | 'eval' | None for all)."""
    if split is not None and split not in SPLITS:
        raise PreflineError(f"unknown prompt split {split!r}; expected one of {SPLITS}")
    text = resources.files(__name__).joinpath("prompts.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [r for r in rows if split is None or r["split"] == split]
