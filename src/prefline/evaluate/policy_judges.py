"""The judges of a policy evaluation, each with its role, and the ``rm-hh`` held-out judge.

``eval policy`` scores A against B under every judge it is given — the headline (held out),
more held-out judges, the labelling judge (the annotator of A's training data) and the proxy
reward model — so a win that only the labelling judge or the proxy sees shows as exactly that.

``rm-hh`` is a reward model trained by prefline on real human preference data, the
harmless-base part of Anthropic's HH-RLHF (MIT licence): human raters, not the labelling
judge, chose its labels, and it never saw the policy's training pairs. Model weights are too
big for git, so it is *built on first use*: ``prefline train reward`` (the same stage, the
recipe in :func:`hh_reward_config`, fixed seed) on the embedded MiniLM backbone, into
``<cache>/judges/rm-hh-<key>`` where the key hashes the data file's bytes, the recipe's
settings and the backbone; ``recipe.json`` beside the model records all of them and the
model's accuracy (with its 95% CI) on the file's own held-out test pairs. Later uses load the cached model, offline.
The data is ``rm-hh:FILE`` (an HH-format JSONL, .gz ok), else ``$PREFLINE_HH_DATA``, else
the slice packaged under ``prefline/data/hh/`` when a build ships one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from prefline.base.config import to_dict
from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash, file_sha256
from prefline.base.paths import cache_dir
from prefline.evaluate.policy_config import PolicyEvalConfig
from prefline.evaluate.reward import evaluate_heldout
from prefline.judges import make_judge, parse_spec
from prefline.judges.base import Judge
from prefline.judges.reward_model import RewardModelJudge
from prefline.store.context import Context
from prefline.train.reward import run as train_reward
from prefline.train.reward_config import RewardConfig
from prefline.train.train_config import TrainConfig

HH_ENV = "PREFLINE_HH_DATA"
"""Environment variable naming the HH-RLHF file ``rm-hh`` trains on (when no FILE given)."""
HH_PACKAGED = "hh/harmless-base.jsonl.gz"
"""Where a build that ships an HH slice keeps it, inside ``prefline.data``."""
HH_SEED = 1234
"""Seed of the rm-hh recipe (weights init, shuffling, val carve): same data, same model."""
HH_RECIPE = 1
"""Bump when the recipe changes in a way its settings do not show (busts the cache)."""

Judged = tuple[str, str, Judge]
"""``(spec, role, judge)``: one row of the judge matrix, before scoring."""


def hh_reward_config(data: str, backbone: str | None = None) -> RewardConfig:
    """The rm-hh recipe: one epoch of Bradley-Terry on the file's train split (10% of its
    prompts held out as a test split, 10% of the rest as val for early stopping and the
    temperature), MiniLM (``backbone`` None) at 256 tokens."""
    return RewardConfig(data=data, model=backbone, max_length=256, test_fraction=0.1,
                        train=TrainConfig(lr=5e-5, epochs=1, batch_size=16, weight_decay=0.01,
                                          seed=HH_SEED, early_stopping_patience=2))


def hh_data(arg: str) -> Path:
    """The HH file of an ``rm-hh[:FILE]`` spec; a PreflineError saying where to put one."""
    if arg:
        path = Path(arg).expanduser()
    elif os.environ.get(HH_ENV):
        path = Path(os.environ[HH_ENV]).expanduser()
    else:
        packaged = resources.files("prefline.data").joinpath(HH_PACKAGED)
        if not packaged.is_file():
            raise PreflineError(
                f"rm-hh needs HH-RLHF preference data: pass rm-hh:FILE or set {HH_ENV} to an "
                "HH-format JSONL (e.g. harmless-base/test.jsonl.gz from github.com/anthropics/"
                "hh-rlhf, MIT licence); this install ships none", field="judge")
        path = Path(str(packaged))
    if not path.is_file():
        raise PreflineError("HH data file does not exist", path=str(path), field="judge")
    return path.resolve()


def build_hh_reward_model(data: Path, ctx: Context, backbone: str | None = None) -> Path:
    """The rm-hh model folder for ``data``: the cached one, or trained now (see module doc)."""
    cfg = hh_reward_config(str(data), backbone)
    settings = {k: v for k, v in to_dict(cfg).items() if k != "data"}
    key = content_hash({"data_sha256": file_sha256(data), "config": settings,
                        "recipe": HH_RECIPE})
    root = cache_dir() / "judges" / f"rm-hh-{key[:16]}"
    if (root / "recipe.json").is_file():
        return root / "model"
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    res = train_reward(cfg, dataclasses.replace(ctx, run_dir=tmp / "model"))
    _, held, _ = evaluate_heldout(res.path, snapshot=None, data=str(data),
                                  ctx=dataclasses.replace(ctx, run_dir=tmp / "heldout"))
    recipe = {"recipe": "prefline train reward (prefline.evaluate.policy_judges."
                        "hh_reward_config)", "recipe_version": HH_RECIPE, "key": key,
              "data": str(data), "data_sha256": file_sha256(data), "config": to_dict(cfg),
              "splits": res.splits, "metrics": res.to_json().get("metrics"),
              "heldout": None if held is None else {  # its own HH test pairs
                  k: held.to_json().get(k) for k in ("n_pairs", "accuracy", "accuracy_ci", "ece")}}
    (tmp / "recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True, default=str))
    if root.exists():  # built meanwhile by another process: same key, same recipe
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(root)
    return root / "model"


def build_judge(spec: str, ctx: Context) -> Judge:
    """The judge of ``spec``; ``rm-hh[:FILE]`` is built (or loaded from the cache) here."""
    kind, arg = parse_spec(spec)
    if kind != "rm-hh":
        return make_judge(spec)
    path = build_hh_reward_model(hh_data(arg), ctx)
    recipe = json.loads((path.parent / "recipe.json").read_text())
    return RewardModelJudge(path, provenance={k: recipe.get(k) for k in (
        "recipe", "recipe_version", "key", "data_sha256", "config", "metrics", "heldout")})


def judges_of(cfg: PolicyEvalConfig, ctx: Context) -> list[Judged]:
    """Every judge of the matrix but the proxy, in row order: the headline, the other
    held-out judges, then the labelling judge."""
    plan = [(cfg.judge, "held-out"), *((s, "held-out") for s in cfg.heldout_judges if
                                       s != cfg.judge)]
    if cfg.labelling_judge is not None:
        plan.append((cfg.labelling_judge, "labelling"))
    return [(spec, role, build_judge(spec, ctx)) for spec, role in plan]


def describe(judged: list[Judged]) -> list[dict[str, Any]]:
    """``[{spec, role}]`` of the judges, for logs and tests."""
    return [{"spec": spec, "role": role} for spec, role, _ in judged]
