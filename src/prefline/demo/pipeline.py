"""The demo loop: generate → label → store → snapshot → audit → reward → bon → dpo → evaluate
→ overopt → register, each step the same stage ``run(cfg, ctx)`` a user would call by hand.

It is the RLHF structure: the labelling judge is the annotator, with a label budget and
label noise (label); the reward model learns from those labels (store, snapshot, reward);
the policy is optimised against the reward model — best-of-N data into DPO (bon, dpo); the
evaluation scores it under a held-out judge (the headline), the annotator ("gold") and the
proxy, and the over-optimisation curve sets best-of-N under the proxy against KL (overopt).

:func:`run` passes each stage's typed result to the next (the snapshot id to the trainers,
the trained policy and reward model to the evaluation) and records every artifact once,
with its typed inputs, in the demo's own store inside the run folder. Every step runs
through :class:`~prefline.demo.cache.StageCache`: its cache key is its config section plus
the output hashes of the steps it reads, so a re-run reuses finished steps and a changed
setting re-runs exactly the steps downstream of it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select

from prefline.audit.run import AuditConfig
from prefline.audit.run import run as audit
from prefline.base.config import to_dict
from prefline.base.stage import Ref, StageResult, jsonable
from prefline.data import load_prompts
from prefline.demo.cache import CachedStage, StageCache
from prefline.demo.config import JUDGE_SPEC, DemoConfig
from prefline.demo.rlhf import (
    FixedBackend,
    add_label_noise,
    best_vs_worst_rows,
    bon_kl,
    budget_pairs,
    nested_best,
    pair_generations,
)
from prefline.evaluate.policy import compare
from prefline.evaluate.policy import run as eval_policy
from prefline.evaluate.policy_judges import judges_of
from prefline.evaluate.reward import evaluate_heldout
from prefline.formats.jsonl import read_jsonl, write_jsonl
from prefline.generate.best_of_n import RewardScorer, run_best_of_n
from prefline.generate.io import generation_record, read_generations, read_prompt_rows
from prefline.generate.run import GenerateConfig
from prefline.generate.run import run as generate
from prefline.judges.run import JudgeConfig
from prefline.judges.run import run as judge
from prefline.models.reward import load_reward_model
from prefline.models.tiny import save_tiny
from prefline.registry import ancestors, record_result
from prefline.store.context import Context, Store
from prefline.store.imports import ImportConfig
from prefline.store.imports import run as import_data
from prefline.store.models import Feedback
from prefline.store.snapshots import run as snapshot
from prefline.train.dpo import run as train_dpo
from prefline.train.reward import run as train_reward

STAGES = ("models", "generate", "label", "store", "snapshot", "audit", "reward", "bon", "dpo",
          "evaluate", "overopt", "register")
Step = Callable[[Path], tuple[dict[str, Any], list[str]]]


class Events(Protocol):
    """What the demo says as it goes; the CLI prints a line per stage, tests stay silent."""

    def start(self, stage: str) -> None: ...

    def end(self, result: CachedStage) -> None: ...


class _Quiet:
    def start(self, stage: str) -> None:
        pass

    def end(self, result: CachedStage) -> None:
        pass


@dataclass
class DemoResult(StageResult):
    """Every step's outputs (reused or run), in order, and the run folder."""

    out: Path
    stages: dict[str, CachedStage]


def pick_prompts(rows: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    """``n`` rows taken round-robin over categories in file order (all rows when None)."""
    if n is None or n >= len(rows):
        return list(rows)
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_cat.setdefault(r["category"], []).append(r)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        for cat_rows in by_cat.values():
            if cat_rows and len(out) < n:
                out.append(cat_rows.pop(0))
    return out


def demo_store(out: Path) -> Store:
    """The demo's own SQLite store, inside its run folder."""
    return Store.open(f"sqlite:///{out.resolve() / 'prefline.db'}")


class _Loop:
    """The steps, sharing the config, the demo's Context and the outputs so far."""

    def __init__(self, cfg: DemoConfig, ctx: Context) -> None:
        self.cfg, self.out = cfg, ctx.require_run_dir().resolve()
        self.ctx = dataclasses.replace(ctx, store=demo_store(self.out), run_dir=self.out)
        self.done: dict[str, CachedStage] = {}

    def get(self, name: str) -> dict[str, Any]:
        return self.done[name].outputs

    def models(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """Quick runs build tiny random models into the run folder; full runs use the
        embedded ones."""
        if not self.cfg.quick:
            return {"policy": self.cfg.policy_model,
                    "reward_backbone": self.cfg.reward_backbone}, []
        save_tiny("causal", work / "tiny-policy", seed=self.cfg.seed)
        save_tiny("encoder", work / "tiny-encoder", seed=self.cfg.seed)
        return ({"policy": str(work / "tiny-policy"), "reward_backbone": str(work / "tiny-encoder")},
                ["models/tiny-policy", "models/tiny-encoder"])

    def generate(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """Sample ``k`` candidates per bundled train prompt from the reference policy."""
        c = self.cfg.candidates
        rows = pick_prompts(load_prompts("train"), self.cfg.train_prompts)
        write_jsonl(work / "prompts.jsonl", rows)
        res = generate(GenerateConfig(
            prompts=str(work / "prompts.jsonl"), out=work / "candidates.jsonl",
            policy=self.get("models")["policy"], n=c.k, max_new_tokens=c.max_new_tokens,
            temperature=c.temperature, top_p=c.top_p, seed=self.cfg.seed,
            batch_size=c.batch_size, store=False), self.ctx)
        return ({"prompts": res.prompts, "responses": res.responses, "new_tokens": res.new_tokens,
                 "model": res.model}, ["generate/prompts.jsonl", "generate/candidates.jsonl"])

    def label(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """The annotator: the labelling judge labels ``label_budget`` pairs of distinct
        candidates (drawn seeded); ``label_noise`` of its decisive labels are flipped."""
        gens = read_generations(self.out / "generate" / "candidates.jsonl")
        pairs = budget_pairs(gens, self.cfg.label_budget, self.cfg.seed)
        write_jsonl(work / "budget.jsonl", map(generation_record, pair_generations(gens, pairs)))
        res = judge(JudgeConfig(judge=JUDGE_SPEC, in_file=work / "budget.jsonl",
                                out=work / "judged.jsonl", pairs="all", ties="keep",
                                store=False), self.ctx)
        rows = [r for _, r in read_jsonl(work / "judged.jsonl")]
        noisy, flipped = add_label_noise(rows, self.cfg.label_noise, self.cfg.seed)
        write_jsonl(work / "pairs.jsonl", noisy)
        write_json(work / "flipped.json", flipped)
        available = len(budget_pairs(gens, None, self.cfg.seed))
        return ({"pairs_available": available, "budget": self.cfg.label_budget,
                 "pairs": res.rows_written, "ties": res.choices.get("tie", 0),
                 "decisive": res.rows_written - res.choices.get("tie", 0),
                 "noise": self.cfg.label_noise, "flipped": len(flipped),
                 "judge": res.judge, "judge_config": res.judge_config},
                ["label/budget.jsonl", "label/judged.jsonl", "label/pairs.jsonl",
                 "label/flipped.json"])

    def store(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """Import the judged pairs into the demo's store (idempotent by feedback key)."""
        res = import_data(ImportConfig(
            path=str(self.out / "label" / "pairs.jsonl"), source="demo-judge",
            annotator=f"judge:{self.get('label')['judge']}", annotator_kind="ai_judge"),
            self.ctx, actor="demo")
        with self.ctx.store.session() as s:
            total = int(s.scalar(select(func.count(Feedback.id))) or 0)
        return ({"records": res.records, "feedback_added": res.feedback_added,
                 "feedback_total": total}, ["prefline.db"])

    def snapshot(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """Freeze the feedback into a content-hashed snapshot with a prompt-grouped test split."""
        res = snapshot(dataclasses.replace(self.cfg.snapshot, actor="demo"), self.ctx)
        items: dict[str, int] = {}
        for splits in res.stats.by_split().values():
            for split, n in splits.items():
                items[split] = items.get(split, 0) + n
        return {"id": res.id, "hash": res.content_hash, "items": items,
                "stats": jsonable(res.stats)}, []

    def audit(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """Data-quality audit of the snapshot's feedback: JSON plus the HTML report."""
        res = audit(AuditConfig(snapshot=str(self.get("snapshot")["id"]),
                                report=work / "audit.html"), self.ctx)
        write_json(work / "audit.json", res.to_json())
        keys = ("position_bias", "length_bias", "chosen_longer", "tie_rate", "cycles",
                "duplicates", "leakage")
        return ({"metrics": {k: res.metrics.get(k) for k in keys}},
                ["audit/audit.json", "audit/audit.html"])

    def reward(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """Train the reward model on the snapshot's train split; evaluate on its test split."""
        snap_id = str(self.get("snapshot")["id"])
        cfg = dataclasses.replace(self.cfg.reward, snapshot=snap_id,
                                  model=self.get("models")["reward_backbone"])
        res = train_reward(cfg, self.ctx.with_run_dir(work / "model"))
        art_id = record_result(self.ctx.store, res, cfg, name="demo-reward", actor="demo")
        held: dict[str, Any] = {}
        if res.splits["test"]:  # the held-out figures: eval reward on the test split
            ecfg, evaluation, _ = evaluate_heldout(res.path, snapshot=snap_id, data=None,
                                                   ctx=self.ctx.with_run_dir(work / "eval"))
            if evaluation is not None:
                held = evaluation.to_json()
                record_result(self.ctx.store, evaluation, ecfg, name="demo-reward-eval",
                              actor="demo")
        return ({"path": str(res.path), "artifact_id": art_id, "counts": jsonable(res.counts),
                 "train_metrics": res.to_json()["metrics"], "heldout": held},
                ["reward/model"])

    def bon(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """Best-of-N data: the reward model scores every candidate of every train prompt;
        its best against its worst per prompt is the policy's training pair."""
        rm = self.get("reward")
        scorer = RewardScorer(f"reward:artifact:{rm['artifact_id']}",
                              load_reward_model(rm["path"]))
        gens = read_generations(self.out / "generate" / "candidates.jsonl")
        rows, scores = best_vs_worst_rows(scorer, gens)
        write_jsonl(work / "pairs.jsonl", rows)
        every = [x for ss in scores for x in ss]
        best = [max(ss) for ss in scores]
        return ({"prompts": len(gens), "pairs": len(rows), "scorer": scorer.spec,
                 "mean_score": sum(every) / len(every), "mean_best_score": sum(best) / len(best)},
                ["bon/pairs.jsonl"])

    def dpo(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """DPO (LoRA) on the reward model's best-vs-worst pairs (the bon stage's file): the
        policy is optimised against the reward model, never against the annotator's labels."""
        cfg = dataclasses.replace(self.cfg.dpo, data=str(self.out / "bon" / "pairs.jsonl"),
                                  model=self.get("models")["policy"])
        res = train_dpo(cfg, self.ctx.with_run_dir(work))
        # Lineage: the data file was labelled by the reward model, so it is an input too.
        res = dataclasses.replace(res, inputs=(*res.inputs, Ref(
            "reward_model", artifact_id=int(self.get("reward")["artifact_id"]))))
        art_id = record_result(self.ctx.store, res, cfg, name="demo-policy", actor="demo")
        return ({"path": str(res.path), "artifact_id": art_id,
                 "pairs": res.counts["examples"]["train"], "summary": res.to_json()},
                [str(Path(res.path).relative_to(self.out))])

    def evaluate(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """The new policy vs the reference on held-out prompts (never trained on) of
        ``eval_split``, under every judge: the headline held-out one, the labelling judge and
        the proxy reward model (see :mod:`prefline.evaluate.policy_judges`)."""
        rows = pick_prompts(load_prompts(self.cfg.eval_split), self.cfg.eval_prompts)
        write_jsonl(work / "prompts.jsonl", rows)
        cfg = dataclasses.replace(
            self.cfg.evaluate, policy=f"artifact:{self.get('dpo')['artifact_id']}",
            baseline=self.get("models")["policy"] or "default",
            prompts=str(work / "prompts.jsonl"),
            reward=f"artifact:{self.get('reward')['artifact_id']}")
        res = eval_policy(cfg, self.ctx.with_run_dir(work))
        art_id = record_result(self.ctx.store, res, cfg, name="demo-policy-eval", actor="demo")
        j = res.judge
        matrix = [{"judge": r.spec, "role": r.role, "win_rate": r.win_rate, "ci": list(r.ci),
                   "n": r.n} for r in res.matrix]
        return ({"judge": j.spec, "judge_role": j.role, "judge_win_rate": j.win_rate,
                 "judge_win_rate_ci": list(j.ci), "matrix": matrix,
                 "proxy_win_rate": res.proxy.win_rate if res.proxy else None, "kl": res.kl,
                 "prompts": len(rows), "split": self.cfg.eval_split,
                 "target_met": res.verdict.target_met, "evaluation_id": art_id},
                ["evaluate/prompts.jsonl", "evaluate/eval.json"])

    def overopt(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """The over-optimisation curve: 1 + max N reference samples per evaluation prompt,
        every one scored by the proxy (best-of-N); for each N the proxy's pick among samples
        1..N is judged against sample 0 by every judge of the evaluation, and the DPO
        policy's measured point is set beside them."""
        rm, ev, width = self.get("reward"), self.get("evaluate"), 1 + max(self.cfg.overopt_n)
        cfg = dataclasses.replace(
            self.cfg.evaluate, policy="best-of-N (proxy)", baseline="reference sample",
            prompts=str(self.out / "evaluate" / "prompts.jsonl"),
            reward=f"artifact:{rm['artifact_id']}")
        run_best_of_n(GenerateConfig(
            prompts=cfg.prompts, out=work / "samples.jsonl", policy=self.get("models")["policy"],
            best_of=width, reward=rm["path"], max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature, top_p=cfg.top_p, seed=self.cfg.overopt_seed,
            batch_size=cfg.batch_size, store=False), self.ctx)
        recs = [r for _, r in read_jsonl(work / "samples.jsonl")]
        rows, judged = read_prompt_rows(cfg.prompts), judges_of(cfg, self.ctx)
        proxy = load_reward_model(rm["path"])
        reference = FixedBackend([r["responses"][0] for r in recs], "reference")
        points = []
        for n in sorted(set(self.cfg.overopt_n)):
            picks = nested_best([r["scores"][1:] for r in recs],
                                [r["responses"][1:] for r in recs], n)
            res = compare(FixedBackend(picks, f"best-of-{n}"), reference, rows, judged[0][2],
                          cfg, proxy, others=judged[1:])
            points.append({"policy": f"best-of-{n}", "n": n, "kl": bon_kl(n),
                           "kl_kind": "bound", "matrix": [
                               {"judge": r.spec, "role": r.role, "win_rate": r.win_rate,
                                "ci": list(r.ci)} for r in res.matrix]})
        points.append({"policy": "dpo", "n": None, "kl": ev["kl"], "kl_kind": "measured",
                       "matrix": ev["matrix"]})
        write_json(work / "overopt.json", points)
        return {"points": points}, ["overopt/samples.jsonl", "overopt/overopt.json"]

    def register(self, work: Path) -> tuple[dict[str, Any], list[str]]:
        """The evaluation's lineage graph, flattened for the report."""
        eval_id = self.get("evaluate")["evaluation_id"]
        chain = [{"id": a.id, "kind": a.kind, "name": a.name, "path": a.path,
                  "snapshot_hash": a.snapshot_hash, "code_version": a.code_version}
                 for a in ancestors(eval_id, self.ctx.store)]
        write_json(work / "lineage.json", chain)
        return {"evaluation_id": eval_id, "lineage": chain}, ["register/lineage.json"]


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str))


def _sections(cfg: DemoConfig) -> dict[str, dict[str, Any]]:
    """The settings each step depends on (what its cache key hashes)."""
    top = {"quick": cfg.quick, "seed": cfg.seed}
    return {
        "models": {**top, "policy": cfg.policy_model, "reward_backbone": cfg.reward_backbone},
        "generate": {**top, "train_prompts": cfg.train_prompts, **to_dict(cfg.candidates)},
        "label": {"seed": cfg.seed, "label_budget": cfg.label_budget,
                  "label_noise": cfg.label_noise},
        "store": {}, "snapshot": to_dict(cfg.snapshot), "audit": {},
        "reward": to_dict(cfg.reward), "bon": {}, "dpo": to_dict(cfg.dpo),
        "evaluate": {"eval_prompts": cfg.eval_prompts, "eval_split": cfg.eval_split,
                     **to_dict(cfg.evaluate)},
        "overopt": {"overopt_n": list(cfg.overopt_n), "seed": cfg.overopt_seed,
                    "eval_prompts": cfg.eval_prompts, "eval_split": cfg.eval_split,
                    **to_dict(cfg.evaluate)},
        "register": {},
    }


DEPENDS = {"models": (), "generate": ("models",), "label": ("generate",), "store": ("label",),
           "snapshot": ("store",), "audit": ("snapshot",), "reward": ("models", "snapshot"),
           "bon": ("generate", "reward"), "dpo": ("models", "bon"),
           "evaluate": ("models", "reward", "dpo"), "overopt": ("models", "reward", "evaluate"),
           "register": ("evaluate",)}


def run(cfg: DemoConfig, ctx: Context, events: Events | None = None) -> DemoResult:
    """Run (or reuse) every step in order into ``ctx.run_dir``; returns each step's outputs."""
    ev: Events = events or _Quiet()
    loop = _Loop(cfg, ctx)
    cache = StageCache(loop.out)
    sections = _sections(cfg)
    for name in STAGES:
        ev.start(name)
        inputs = {"stage": name, "config": sections[name],
                  "deps": {d: loop.done[d].output_hash for d in DEPENDS[name]}}
        step: Step = getattr(loop, name)
        loop.done[name] = cache.run(name, inputs, step)
        ev.end(loop.done[name])
    return DemoResult(out=loop.out, stages=loop.done)
