"""What makes a demo run reproducible, and ``prefline demo --reproduce summary.json``.

Every ``summary.json`` records the code version (a dirty tree says so: ``.dirty-<hash>``, see
:mod:`prefline.registry.version`), the hash of the whole configuration, the seeds of every
random step, and the configuration itself. ``--reproduce`` rebuilds that configuration (the
recorded settings, not today's defaults), runs it into a fresh folder, and lists what differs:
the figures (win rates, CIs, KL, reward-model accuracy) and the settings (code version,
config hash, seeds, any setting the current code has that the recorded run did not).
Timings are left out: they measure the machine, not the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.demo.config import DemoConfig
from prefline.registry.version import code_version

FIGURES = ("judge", "judge_win_rate", "judge_win_rate_ci", "matrix", "proxy_win_rate", "kl",
           "reward_model_accuracy", "reward_model_accuracy_ci", "reward_model_ece",
           "target_met", "eval_prompts", "feedback", "snapshot_hash", "annotator",
           "policy_data", "overoptimisation")
"""Summary keys that are results: a reproduction should match them."""
SETTINGS = ("code_version", "config_hash", "seeds")
"""Summary keys that say what ran."""


def seeds(cfg: DemoConfig) -> dict[str, int]:
    """Every seed a demo run uses, by the step that uses it (``demo`` also seeds the label
    budget's draw and the label noise)."""
    return {"demo": cfg.seed, "reward": cfg.reward.train.seed, "dpo": cfg.dpo.train.seed,
            "evaluate": cfg.evaluate.seed, "overopt": cfg.overopt_seed}


def provenance(cfg: DemoConfig) -> dict[str, Any]:
    """The reproducibility block of ``summary.json``."""
    version = code_version()
    return {"code_version": version, "code_dirty": ".dirty" in version,
            "config_hash": content_hash(config.to_dict(cfg)), "seeds": seeds(cfg),
            "config": config.to_dict(cfg)}


def recorded_config(path: Path) -> tuple[dict[str, Any], DemoConfig]:
    """``(summary, its configuration)`` from a demo's ``summary.json``."""
    try:
        summary = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PreflineError(f"cannot read the summary ({exc})", path=str(path)) from None
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise PreflineError("no recorded configuration (a summary.json of a demo run from "
                            "before reproducibility was recorded?)", path=str(path),
                            field="config")
    try:
        cfg = config.build(DemoConfig, summary["config"], command="demo --reproduce")
    except PreflineError as exc:
        raise PreflineError(exc.message, path=str(path), field=exc.field) from None
    return summary, cfg


@dataclass(frozen=True)
class Difference:
    """One summary entry that differs between the recorded run and the reproduction."""

    key: str
    kind: str
    """figure | setting"""
    recorded: Any
    reproduced: Any


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def differences(recorded: dict[str, Any], reproduced: dict[str, Any]) -> list[Difference]:
    """Figures and settings that differ, as dotted keys (``seeds.dpo``,
    ``config.dpo.train.lr``); an entry only one side has shows ``None`` on the other."""
    out = []
    for kind, keys in (("figure", FIGURES), ("setting", (*SETTINGS, "config"))):
        old = _flat({k: recorded.get(k) for k in keys}, "")
        new = _flat({k: reproduced.get(k) for k in keys}, "")
        out += [Difference(k, kind, old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
                if old.get(k) != new.get(k)]
    return out


def render(diffs: list[Difference]) -> list[str]:
    """Lines for the terminal: ``kind key: recorded → reproduced``, or that nothing differs."""
    if not diffs:
        return ["reproduced: every figure and setting equals the recorded run"]
    return [f"{d.kind:<7} {d.key}: {_fmt(d.recorded)} → {_fmt(d.reproduced)}" for d in diffs]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)
