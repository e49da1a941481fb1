"""``prefline bench audit``: audit a fresh SQLite store holding ``n`` synthetic feedback events.

The store is filled with bulk Core inserts (not ORM objects) so filling does not dominate.
The data has the shape of a real labelling project: 3 responses per prompt, 10 humans and
2 AI judges, mostly pairwise labels plus ratings and thumbs, a mild position and length
bias, some fast labels, 1% exact and 1% near-duplicate prompts, and one snapshot with a
90/10 train/test split that leaks a few prompts. Each run fills its own fresh store, then
times the audit of the whole store and of the snapshot. There is no peer: the target is the
30 s budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from prefline.base.errors import PreflineError
from prefline.bench.harness import Benchmark, side_main
from prefline.store.models import Annotator, Feedback, Prompt, Response, Snapshot, SnapshotItem

BUDGET_S = 30.0


@dataclass(frozen=True)
class AuditBenchConfig:
    """Size and seed of the synthetic store."""

    n: int = 100_000
    """Synthetic feedback events (prompts = n / 4, three responses each)."""
    seed: int = 0
    """Seed of the synthetic data."""

    def __post_init__(self) -> None:
        if self.n < 10:
            raise PreflineError(f"n must be at least 10, got {self.n}", field="n")


WORDS = [f"w{i}" for i in range(4000)]
TAGS = ["chat", "code", "math", "safety"]


def _prompts(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    texts = [" ".join(rng.choice(WORDS, int(rng.integers(8, 40)))) for _ in range(n)]
    for i in range(0, n - 1, 100):  # 1% exact copies (case/punctuation changed) ...
        texts[i + 1] = texts[i].upper() + "?"
    for i in range(50, n - 1, 100):  # ... and 1% near copies (one word appended)
        texts[i + 1] = texts[i] + " please"
    return [{"id": i + 1, "content_hash": f"{i:064x}", "text": t, "tags": [TAGS[i % 4]]}
            for i, t in enumerate(texts)]


def _feedback(rng: np.random.Generator, n: int, n_prompts: int, lengths: np.ndarray) -> list[dict[str, Any]]:
    prompt = rng.integers(0, n_prompts, n)
    pair = rng.integers(0, 3, n)
    ra = prompt * 3 + np.array([0, 0, 1])[pair] + 1
    rb = prompt * 3 + np.array([1, 2, 2])[pair] + 1
    ann = rng.integers(1, 13, n)
    a_longer = lengths[ra - 1] > lengths[rb - 1]
    left_is_a = rng.random(n) < 0.5
    # P(a wins) grows with a being longer and being shown left: the biases the audit finds.
    p_a = 0.5 + 0.1 * np.where(a_longer, 1, -1) + 0.05 * np.where(left_is_a, 1, -1)
    u = rng.random(n)
    choice = np.where(u < 0.05, "tie", np.where(u < 0.07, "both_bad", np.where(rng.random(n) < p_a, "a", "b")))
    time_ms = np.maximum(200, rng.lognormal(9.5, 0.6, n)).astype(np.int64)
    kind = np.where(rng.random(n) < 0.9, "pairwise", np.where(rng.random(n) < 0.5, "rating", "binary"))
    rows = []
    for i in range(n):
        pid, k, an = int(prompt[i]) + 1, str(kind[i]), int(ann[i])
        row: dict[str, Any] = {"id": i + 1, "kind": k, "annotator_id": an, "prompt_id": pid,
                               "response_a_id": None, "response_b_id": None, "response_id": None,
                               "choice": None, "shown_left_id": None,
                               "time_spent_ms": int(time_ms[i]) if an <= 10 else None}
        if k == "pairwise":
            row.update(response_a_id=int(ra[i]), response_b_id=int(rb[i]), choice=str(choice[i]),
                       shown_left_id=int(ra[i] if left_is_a[i] else rb[i]),
                       payload={"choice": str(choice[i])})
        elif k == "rating":
            row.update(response_id=int(ra[i]), payload={"scores": {"helpfulness": int(rng.integers(1, 6))}})
        else:
            row.update(response_id=int(ra[i]), payload={"value": bool(rng.random() < 0.6)})
        rows.append(row)
    return rows


def _insert(engine: Engine, table: Any, rows: list[dict[str, Any]], chunk: int = 20_000) -> None:
    with engine.begin() as conn:
        for s in range(0, len(rows), chunk):
            conn.execute(insert(table), rows[s:s + chunk])


def fill_store(engine: Engine, n: int = 100_000, seed: int = 0) -> dict[str, int]:
    """Insert ``n`` synthetic feedback events (and their prompts, responses, annotators).

    Returns the row counts per table. ``engine`` must point at a migrated, empty store.
    """
    rng = np.random.default_rng(seed)
    n_prompts = max(1, n // 4)
    annotators = [{"id": i, "name": f"human{i}" if i <= 10 else f"judge{i - 10}",
                   "kind": "human" if i <= 10 else "ai_judge"} for i in range(1, 13)]
    lengths = rng.integers(20, 600, n_prompts * 3)
    responses = [{"id": j + 1, "content_hash": f"r{j:063x}", "prompt_id": j // 3 + 1,
                  "text": "x" * int(lengths[j])} for j in range(n_prompts * 3)]
    test = rng.random(n_prompts) < 0.1
    split = ["test" if t else "train" for t in test]
    for i in range(0, n_prompts - 1, 500):  # a few leaked prompts in both splits
        split[i], split[i + 1] = "train", "test"
    items = [{"snapshot_id": 1, "position": i, "split": s, "kind": "pairwise", "prompt_id": i + 1,
              "data": {}} for i, s in enumerate(split)]
    _insert(engine, Annotator.__table__, annotators)
    _insert(engine, Prompt.__table__, _prompts(rng, n_prompts))
    _insert(engine, Response.__table__, responses)
    _insert(engine, Feedback.__table__, _feedback(rng, n, n_prompts, lengths))
    _insert(engine, Snapshot.__table__, [{"id": 1, "name": "bench", "content_hash": "0" * 64,
                                          "recipe": {}, "stats": {}}])
    _insert(engine, SnapshotItem.__table__, items)
    return {"feedback": n, "prompts": n_prompts, "responses": n_prompts * 3, "annotators": 12}


def run_side(impl: str, setting: str, cfg: AuditBenchConfig, inputs: Path,
             scratch: Path) -> dict[str, Any]:
    """Fill a fresh store, then time the audit of the whole store and of its snapshot."""
    from prefline.audit.run import AuditConfig, run
    from prefline.base.progress import Reporter
    from prefline.store.context import Context, Store
    from prefline.store.db import open_store

    url = f"sqlite:///{scratch / 'bench.db'}"
    engine = open_store(url)
    t0 = time.perf_counter()
    counts = fill_store(engine, cfg.n, cfg.seed)
    fill_s = time.perf_counter() - t0
    ctx = Context(store=Store.open(url), progress=Reporter(False))
    t1 = time.perf_counter()
    whole = run(AuditConfig(), ctx)
    t2 = time.perf_counter()
    snap = run(AuditConfig(snapshot="1"), ctx)
    t3 = time.perf_counter()
    engine.dispose()
    return {"counts": counts, "fill_s": round(fill_s, 3), "audit_s": round(t2 - t1, 3),
            "audit_snapshot_s": round(t3 - t2, 3), "stages_s": whole.timings_s,
            "snapshot_stages_s": snap.timings_s,
            "headline": {k: whole.metrics[k]
                         for k in ("position_bias", "length_bias", "alpha", "duplicates")},
            "snapshot_leakage": snap.metrics["leakage"]}


BENCH = Benchmark(name="audit", module="prefline.bench.audit", config=AuditBenchConfig,
                  run_side=run_side, headline="",
                  targets={"audit_s": ("<=", BUDGET_S), "audit_snapshot_s": ("<=", BUDGET_S)})

if __name__ == "__main__":
    side_main(BENCH)
