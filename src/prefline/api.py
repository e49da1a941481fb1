"""The Python API: every stage's config and ``run``, the store handle and the registry.

``import prefline`` gives these names lazily (``prefline.train_dpo`` imports this module
on first use), so the command line does not pay for torch until a stage needs it::

    import prefline as pl

    ctx = pl.Context(store=pl.Store.open("sqlite:///prefs.db"), run_dir=Path("runs/rm"))
    pl.import_data(pl.ImportConfig(path="prefs.jsonl"), ctx)
    snap = pl.snapshot(pl.SnapshotConfig(name="v1"), ctx)
    rm = pl.train_reward(pl.RewardConfig(snapshot="v1"), ctx)
    pl.record(ctx.store, rm, cfg)

Each stage is ``run(cfg, ctx) -> result``: the same function the CLI calls. A stage never
registers its result; :func:`record` does, with its typed inputs (a lineage graph).
See docs/python-api.md.
"""

from __future__ import annotations

from prefline.audit.run import AuditConfig, AuditResult
from prefline.audit.run import run as audit
from prefline.base.config import load as load_config
from prefline.base.config import to_dict as config_dict
from prefline.base.config import to_toml as config_toml
from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter
from prefline.base.stage import Ref, StageResult
from prefline.demo.config import DemoConfig
from prefline.demo.pipeline import run as demo
from prefline.evaluate.policy import run as eval_policy
from prefline.evaluate.policy_config import PolicyEvalConfig
from prefline.evaluate.policy_result import PolicyEvalResult
from prefline.evaluate.reward import RewardEvalResult
from prefline.evaluate.reward import run as eval_reward
from prefline.evaluate.reward_config import RewardEvalConfig
from prefline.generate.run import GenerateConfig, GenerateResult
from prefline.generate.run import run as generate
from prefline.judges.run import JudgeConfig, JudgeResult
from prefline.judges.run import run as judge
from prefline.registry import lineage_tree, list_artifacts, render_tree
from prefline.registry import record_result as record
from prefline.store.context import Context, Store
from prefline.store.export_stage import ExportConfig, ExportResult
from prefline.store.export_stage import run as export
from prefline.store.imports import ImportConfig
from prefline.store.imports import run as import_data
from prefline.store.ingest import ImportSummary
from prefline.store.snapshot_config import SnapshotConfig
from prefline.store.snapshots import SnapshotResult
from prefline.store.snapshots import run as snapshot
from prefline.train.dpo import DPOResult
from prefline.train.dpo import run as train_dpo
from prefline.train.policy_config import DPOConfig
from prefline.train.reward import RewardResult
from prefline.train.reward import run as train_reward
from prefline.train.reward_config import RewardConfig
from prefline.train.train_config import TrainConfig

__all__ = [
    "AuditConfig", "AuditResult", "Context", "DPOConfig", "DPOResult", "DemoConfig",
    "ExportConfig", "ExportResult", "GenerateConfig", "GenerateResult", "ImportConfig",
    "ImportSummary", "JudgeConfig", "JudgeResult", "PolicyEvalConfig", "PolicyEvalResult",
    "PreflineError", "Ref", "Reporter", "RewardConfig", "RewardEvalConfig", "RewardEvalResult",
    "RewardResult", "SnapshotConfig", "SnapshotResult", "StageResult", "Store", "TrainConfig",
    "audit", "config_dict", "config_toml", "demo", "eval_policy", "eval_reward", "export",
    "generate", "import_data", "judge", "lineage_tree", "list_artifacts", "load_config",
    "record", "render_tree", "snapshot", "train_dpo", "train_reward",
]
