"""Shared by the policy-training tests: toy preference data, files, configs and a Context."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from prefline.base.progress import Reporter
from prefline.formats.examples import PreferencePair, as_messages
from prefline.store.context import Context, Store
from prefline.train.policy_config import DPOConfig
from prefline.train.train_config import TrainConfig

FAST = dict(lr=2e-3, batch_size=4, max_steps=4, precision="fp32", warmup_ratio=0.0)
"""Engine settings for tiny-model runs: fp32 so that runs compare exactly."""


def toy_pairs(n: int = 24, seed: int = 0) -> list[PreferencePair]:
    """Prompts of varied length; the chosen answer is always polite, the rejected curt."""
    rng = random.Random(seed)
    return [PreferencePair(as_messages(f"question {i}: " + "why? " * rng.randint(1, 6)),
                           "Good question, here is a careful answer. " * rng.randint(1, 2),
                           "no" + "!" * rng.randint(0, 5), prompt_key=f"p{i}")
            for i in range(n)]


def pair_rows(pairs: list[PreferencePair]) -> list[dict[str, Any]]:
    return [{"prompt": p.prompt[0]["content"], "chosen": p.chosen, "rejected": p.rejected}
            for p in pairs]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def mixed_rows(n_pairs: int = 12, n_thumbs: int = 10, n_ratings: int = 4,
               n_rankings: int = 2) -> list[dict[str, Any]]:
    """Every kind of record an import file can hold, on distinct prompts."""
    rows = pair_rows(toy_pairs(n_pairs))
    rows += [{"prompt": f"thumbs {i}?", "completion": "Sure, gladly. " if i % 2 else "meh",
              "label": bool(i % 2)} for i in range(n_thumbs)]
    rows += [{"prompt": f"rate {i}?", "response": "An answer.", "scores": {"helpful": 3 + i % 2}}
             for i in range(n_ratings)]
    rows += [{"prompt": f"rank {i}?", "responses": ["Best answer.", "ok", "no"],
              "order": [0, 1, 2]} for i in range(n_rankings)]
    return rows


def config(data: Path | None, model: Path, *, snapshot: str | None = None, **kw: Any) -> DPOConfig:
    """A DPOConfig for a tiny run; ``train`` settings go in ``kw["train"]`` as a dict."""
    train = TrainConfig(**{**FAST, **kw.pop("train", {})})
    base: dict[str, Any] = dict(beta=0.5, val_fraction=0.25, test_fraction=0.0)
    return DPOConfig(data=str(data) if data else None, snapshot=snapshot, model=str(model),
                     train=train, **{**base, **kw})


def context(run_dir: Path, db: str | None = None) -> Context:
    return Context(store=Store.open(db or f"sqlite:///{run_dir.parent / 'unused.db'}"),
                   run_dir=run_dir, progress=Reporter(False))
