"""What ``prefline demo`` runs: sizes, models and training settings for full and quick runs.

The full run is sized for ≤ 15 minutes on a 2-core CPU (see ``docs/demo.md`` for measured
stage times); the quick run uses tiny random models built in code and a handful of prompts,
so CI exercises every stage in well under 2 minutes. Only the *training* side is tuned; the
evaluation (held-out prompts, judge, sampling) is fixed up front and identical in both runs
except for size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DemoConfig:
    out: str
    quick: bool = False
    policy_model: str | None = None
    """Causal LM to improve (None: the embedded SmolLM2-135M-Instruct)."""
    reward_backbone: str | None = None
    """Reward-model encoder (None: the embedded all-MiniLM-L6-v2)."""
    train_prompts: int | None = None
    """How many train-split prompts to sample candidates for (None: all 252). Two runs on
    140 prompts gave 60.1% and 53.6%: too little DPO data for a stable result."""
    eval_prompts: int | None = None
    """How many eval-split prompts to evaluate on (None: all)."""
    k: int = 4
    """Candidates sampled per train prompt."""
    gen_max_new_tokens: int = 48
    gen_temperature: float = 0.9
    gen_top_p: float = 1.0
    """1.0 = plain temperature sampling (top-p sorts the 49k-token vocabulary every step)."""
    gen_batch_size: int = 256
    """Sequences per generate call: decoding a 135M model on CPU is per-op overhead bound,
    so wide batches are several times faster per token."""
    rm_epochs: int = 1
    rm_lr: float = 5e-5
    rm_batch_size: int = 16
    rm_max_length: int = 256
    dpo_loss: str = "sigmoid"
    dpo_beta: float = 0.1
    dpo_lr: float = 2e-4
    dpo_epochs: int = 4
    dpo_batch_size: int = 8
    dpo_lora_r: int = 16
    dpo_max_length: int = 256
    eval_samples: int = 1
    eval_max_new_tokens: int = 48
    eval_temperature: float = 0.7
    snapshot_test_fraction: float = 0.1
    seed: int = 0

    @property
    def out_dir(self) -> Path:
        return Path(self.out).resolve()

    @property
    def db_url(self) -> str:
        """The demo's own SQLite store, inside ``--out``."""
        return f"sqlite:///{self.out_dir / 'prefline.db'}"

    def section(self, *names: str) -> dict[str, Any]:
        """The fields a stage depends on (what its cache key hashes)."""
        values = asdict(self)
        return {n: values[n] for n in names}


def full_config(out: str) -> DemoConfig:
    """The real loop on the embedded models (≈ 250 train prompts × 4 candidates)."""
    return DemoConfig(out=out)


def quick_config(out: str) -> DemoConfig:
    """Tiny random models, a few prompts: exercises every stage in seconds (not a result)."""
    return replace(DemoConfig(out=out, quick=True), train_prompts=14, eval_prompts=7, k=3,
                   gen_max_new_tokens=12, gen_batch_size=48, rm_epochs=1, rm_batch_size=8,
                   rm_max_length=64, dpo_epochs=1, dpo_batch_size=4, dpo_lora_r=4,
                   dpo_max_length=64, eval_samples=1, eval_max_new_tokens=12)
