"""The demo loop, one function per stage: generate → label → store → snapshot → audit →
reward → dpo → evaluate → register (the report is written by ``demo.report``).

Every stage runs through :class:`~prefline.demo.cache.StageCache`: its cache key is its
config section plus the output hashes of the stages it reads, so a re-run reuses finished
stages and a changed setting re-runs exactly the stages downstream of it. Stages import their
dependencies lazily; a missing module fails that stage loudly rather than being skipped.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter as Bars
from prefline.demo.cache import StageCache, StageResult
from prefline.demo.config import DemoConfig
from prefline.formats import jsonl

STAGES = ("models", "generate", "label", "store", "snapshot", "audit", "reward", "dpo",
          "evaluate", "register")
JUDGE_SPEC = "rules"
Tick = Callable[[int, int], None]


def need(module: str, stage: str) -> Any:
    """Import ``module`` for ``stage`` or stop with a clear sentence (never skip silently)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PreflineError(f"stage {stage} unavailable: module {module} missing ({exc})") from exc


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


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in jsonl.read_jsonl(path)]


# ---- stages ----------------------------------------------------------------------------------

def stage_models(cfg: DemoConfig, work: Path) -> tuple[dict[str, Any], list[str]]:
    """Quick runs build tiny random models into the out folder; full runs use the embedded ones."""
    if not cfg.quick:
        return {"policy": cfg.policy_model, "reward_backbone": cfg.reward_backbone}, []
    from prefline.models.tiny import save_tiny

    save_tiny("causal", work / "tiny-policy", seed=cfg.seed)
    save_tiny("encoder", work / "tiny-encoder", seed=cfg.seed)
    return ({"policy": str(work / "tiny-policy"), "reward_backbone": str(work / "tiny-encoder")},
            ["models/tiny-policy", "models/tiny-encoder"])


def stage_generate(cfg: DemoConfig, models: dict[str, Any], work: Path,
                   tick: Tick) -> tuple[dict[str, Any], list[str]]:
    """Sample ``k`` candidates per train prompt from the reference policy."""
    sampling = need("prefline.generate.sampling", "generate")
    from prefline.data import load_prompts

    rows = pick_prompts(load_prompts("train"), cfg.train_prompts)
    model, tok = sampling.load_policy(models["policy"], precision="auto")
    done = 0

    def on_batch(k: int) -> None:
        nonlocal done
        done += k
        tick(done, len(rows))

    responses = sampling.generate(
        model, tok, [r["prompt"] for r in rows], n=cfg.k, max_new_tokens=cfg.gen_max_new_tokens,
        temperature=cfg.gen_temperature, top_p=cfg.gen_top_p, seed=cfg.seed,
        batch_size=cfg.gen_batch_size, on_batch=on_batch)
    out = [{**r, "responses": rs} for r, rs in zip(rows, responses, strict=True)]
    jsonl.write_jsonl(work / "candidates.jsonl", out)
    n_tokens = sampling.count_new_tokens(tok, responses)
    return ({"prompts": len(rows), "responses": sum(len(rs) for rs in responses),
             "new_tokens": n_tokens, "model": models["policy"] or "SmolLM2-135M-Instruct"},
            ["generate/candidates.jsonl"])


def stage_label(cfg: DemoConfig, work: Path, tick: Tick) -> tuple[dict[str, Any], list[str]]:
    """Judge every pair of distinct candidates with the principle judge → import-ready JSONL."""
    judges = need("prefline.judges", "label")
    label = need("prefline.judges.label", "label")
    gen_store = need("prefline.generate.store", "label")
    judge = judges.make_judge(JUDGE_SPEC)
    rows = read_jsonl(cfg.out_dir / "generate" / "candidates.jsonl")
    gens = [gen_store.Generation(prompt=[{"role": "user", "content": r["prompt"]}],
                                 responses=r["responses"], model="reference",
                                 tags=(r["category"],)) for r in rows]
    total = sum(len(label.candidate_pairs(g.responses)) for g in gens)
    _, selected = label.label_generations(judge, gens, "all",
                                          on_done=_counter(tick, total))
    records = []
    for _, pair in selected:
        rec = label.pair_record(judge, pair)
        records.append({k: rec[k] for k in ("prompt", "chosen", "rejected", "tie", "strength", "tags")}
                       | {"annotator": f"judge:{judge.name}", "annotator_kind": "ai_judge"})
    jsonl.write_jsonl(work / "pairs.jsonl", records)
    ties = sum(r["tie"] for r in records)
    return ({"pairs": len(records), "ties": ties, "decisive": len(records) - ties,
             "judge": judge.config()}, ["label/pairs.jsonl"])


def _counter(tick: Tick, total: int) -> Callable[[int], None]:
    state = {"done": 0}

    def on_done(k: int) -> None:
        state["done"] += k
        tick(state["done"], total)
    return on_done


def stage_store(cfg: DemoConfig, work: Path) -> tuple[dict[str, Any], list[str]]:
    """Import the judged pairs into the demo's own store (idempotent by feedback key)."""
    ingest = need("prefline.store.ingest", "store")
    from prefline.store.db import upgrade

    upgrade(cfg.db_url)
    summary = ingest.import_file(cfg.out_dir / "label" / "pairs.jsonl", cfg.db_url,
                                 source="demo-judge", annotator_kind="ai_judge", actor="demo")
    feedback = _count_feedback(cfg.db_url)
    return ({"records": summary.records, "feedback_added": summary.feedback_added,
             "feedback_total": feedback}, ["prefline.db"])


def _count_feedback(db: str) -> int:
    from sqlalchemy import func, select

    from prefline.store.db import session_scope
    from prefline.store.models import Feedback

    with session_scope(db) as s:
        return int(s.scalar(select(func.count(Feedback.id))) or 0)


def stage_snapshot(cfg: DemoConfig, work: Path) -> tuple[dict[str, Any], list[str]]:
    """Freeze the feedback into a content-hashed snapshot with a prompt-grouped test split."""
    snaps = need("prefline.store.snapshots", "snapshot")
    snap = snaps.create_snapshot(cfg.db_url, name="demo", aggregate="majority", ties="drop",
                                 test_fraction=cfg.snapshot_test_fraction, seed=cfg.seed,
                                 actor="demo")
    counts = {split: len(snaps.snapshot_items(snap.id, split, cfg.db_url))
              for split in ("train", "test")}
    return {"id": snap.id, "hash": snap.content_hash, "items": counts, "stats": snap.stats}, []


def stage_audit(cfg: DemoConfig, snapshot: dict[str, Any], work: Path) -> tuple[dict[str, Any], list[str]]:
    """Data-quality audit of the snapshot's feedback; full result JSON plus the HTML report."""
    audit = need("prefline.audit.run", "audit")
    from prefline.base.progress import Reporter as Bars
    from prefline.store.context import Context, Store

    result = audit.run(audit.AuditConfig(snapshot=str(snapshot["id"]), report=work / "audit.html"),
                       Context(store=Store.open(cfg.db_url), progress=Bars(enabled=False)))
    (work / "audit.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
    keys = ("position_bias", "length_bias", "chosen_longer", "tie_rate", "cycles",
            "duplicates", "leakage")
    return ({"metrics": {k: result.metrics.get(k) for k in keys}},
            ["audit/audit.json", "audit/audit.html"])


def stage_reward(cfg: DemoConfig, models: dict[str, Any], snapshot: dict[str, Any],
                 work: Path) -> tuple[dict[str, Any], list[str]]:
    """Train the reward model on the snapshot's train split; evaluate on its test split."""
    train = need("prefline.train.reward", "reward")
    rm_eval = need("prefline.evaluate.reward", "reward")
    stats = need("prefline.evaluate.stats", "reward")
    snaps = need("prefline.store.snapshots", "reward")
    rcfg = train.RewardTrainConfig(
        out=str(work / "model"), snapshot=str(snapshot["id"]), db=cfg.db_url,
        model=models["reward_backbone"], max_length=cfg.rm_max_length, test_fraction=0.0,
        train={"epochs": cfg.rm_epochs, "lr": cfg.rm_lr, "batch_size": cfg.rm_batch_size,
               "seed": cfg.seed, "progress": not cfg.quick})
    art = train.train_reward(rcfg)
    from prefline.models.reward import RewardModel

    rm = RewardModel.load(art.path)
    test = [p for p in snaps.snapshot_examples(snapshot["id"], "test", cfg.db_url) if not p.tie]
    held: dict[str, Any] = {}
    if test:
        held = rm_eval.evaluate_pairs(rm, test)
        c, r = rm_eval.score_pairs(rm, test)
        probs, outcome = stats.symmetric_pairs(c - r, rm.temperature)
        held["reliability"] = [vars(b) for b in stats.reliability_bins(probs, outcome, 10)]
    rel = "reward/model"
    return ({"path": str(art.path), "artifact_id": art.artifact_id,
             "train_metrics": _jsonable(art.metrics), "heldout": _jsonable(held)}, [rel])


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def best_vs_worst(pairs: list[Any]) -> list[Any]:
    """One DPO pair per prompt: among its judged, non-tie pairs, the one whose chosen
    response won the most comparisons and whose rejected one won the fewest.

    Training on every pair of K candidates repeats each prompt K(K-1)/2 times and mostly
    teaches small differences; the clearest pair per prompt gives DPO the strongest signal
    per step, which matters on a CPU budget.
    """
    wins: dict[tuple[str, str], float] = {}
    by_prompt: dict[str, list[Any]] = {}
    for p in pairs:
        key = p.prompt_key or json.dumps(p.prompt)
        by_prompt.setdefault(key, []).append(p)
        wins[(key, p.chosen)] = wins.get((key, p.chosen), 0.0) + (0.5 if p.tie else 1.0)
        wins[(key, p.rejected)] = wins.get((key, p.rejected), 0.0) + (0.5 if p.tie else 0.0)
    out = []
    for key, group in by_prompt.items():
        strict = [p for p in group if not p.tie]
        if strict:
            out.append(max(strict, key=lambda p: wins[(key, p.chosen)] - wins[(key, p.rejected)]))
    return out


def stage_dpo(cfg: DemoConfig, models: dict[str, Any], snapshot: dict[str, Any],
              reward: dict[str, Any], work: Path) -> tuple[dict[str, Any], list[str]]:
    """DPO with LoRA on the snapshot's train split (best-vs-worst pair per prompt)."""
    dpo = need("prefline.train.dpo", "dpo")
    policy_data = need("prefline.train.policy_data", "dpo")
    snaps = need("prefline.store.snapshots", "dpo")
    pairs = best_vs_worst(snaps.snapshot_examples(snapshot["id"], "train", cfg.db_url))
    if not pairs:
        raise PreflineError("stage dpo: the snapshot has no decisive pairs to train on")
    from prefline.base.splits import carve
    from prefline.models.hub import load_causal_lm
    from prefline.registry import Ref, record_result
    from prefline.store.context import Context, Store
    from prefline.train.train_config import TrainConfig

    tcfg = TrainConfig(lr=cfg.dpo_lr, epochs=cfg.dpo_epochs, batch_size=cfg.dpo_batch_size,
                       warmup_ratio=0.1, seed=cfg.seed)
    dcfg = dpo.DPOConfig(model=models["policy"], loss=cfg.dpo_loss, beta=cfg.dpo_beta,
                         lora=True, lora_r=cfg.dpo_lora_r, lora_alpha=2 * cfg.dpo_lora_r,
                         max_length=cfg.dpo_max_length, val_fraction=0.1, export="adapter",
                         train=tcfg)
    train, val = carve(pairs, dcfg.val_fraction, cfg.seed)
    data = policy_data.PolicyData(train, val, [], policy_data.FeedbackUse({"pairwise": len(pairs)}),
                                  Ref("snapshot", snapshot_id=snapshot["id"]), snapshot["hash"])
    ctx = Context(store=Store.open(cfg.db_url), run_dir=work, seed=cfg.seed,
                  progress=Bars(not cfg.quick))
    lm, tok = load_causal_lm(models["policy"])
    res = dpo.fit_policy(dcfg, ctx, data, lm, tok, base_model=str(models["policy"]))
    art_id = record_result(ctx.store, res, dcfg, name=f"dpo-{dcfg.loss}")
    rel = str(Path(res.path).relative_to(cfg.out_dir))
    return ({"path": str(res.path), "artifact_id": art_id, "pairs": len(pairs),
             "summary": _jsonable(res.to_json())}, [rel])


def stage_evaluate(cfg: DemoConfig, models: dict[str, Any], reward: dict[str, Any],
                   dpo_out: dict[str, Any], work: Path,
                   tick: Callable[[str], None]) -> tuple[dict[str, Any], list[str]]:
    """New policy vs the reference on held-out eval prompts (never trained on)."""
    policy_eval = need("prefline.evaluate.policy", "evaluate")
    judges = need("prefline.judges", "evaluate")
    from prefline.data import load_prompts
    from prefline.evaluate.policy_config import PolicyEvalConfig
    from prefline.formats.examples import as_messages
    from prefline.generate.io import PromptRow
    from prefline.generate.sampling import load_policy
    from prefline.models.reward import load_reward_model

    rows = [PromptRow(r["id"], as_messages(r["prompt"]), r["category"])
            for r in pick_prompts(load_prompts("eval"), cfg.eval_prompts)]
    ecfg = PolicyEvalConfig(
        policy=str(dpo_out["path"]), baseline=models["policy"] or "default", judge=JUDGE_SPEC,
        n_samples=cfg.eval_samples, max_new_tokens=cfg.eval_max_new_tokens,
        temperature=cfg.eval_temperature, seed=cfg.seed + 1, batch_size=cfg.gen_batch_size)
    result = policy_eval.compare(
        load_policy(str(dpo_out["path"]), "auto"), load_policy(models["policy"], "auto"), rows,
        judges.make_judge(JUDGE_SPEC), ecfg, load_reward_model(reward["path"]), on_stage=tick)
    (work / "eval.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
    j = result.judge
    return ({"judge_win_rate": j.win_rate, "judge_win_rate_ci": list(j.ci),
             "proxy_win_rate": result.proxy.win_rate if result.proxy else None,
             "kl": result.kl, "prompts": len(rows), "target_met": result.verdict.target_met},
            ["evaluate/eval.json"])


def stage_register(cfg: DemoConfig, snapshot: dict[str, Any], reward: dict[str, Any],
                   dpo_out: dict[str, Any], evaluation: dict[str, Any],
                   work: Path) -> tuple[dict[str, Any], list[str]]:
    """Register the evaluation with its lineage and record the chain for the report."""
    registry = need("prefline.registry", "register")
    eval_id = registry.record(
        cfg.db_url, "evaluation", cfg.out_dir / "evaluate" / "eval.json", config=None,
        name="demo-policy-eval", inputs=[
            registry.Ref("policy", artifact_id=dpo_out["artifact_id"]),
            registry.Ref("reward_model", artifact_id=reward["artifact_id"]),
            registry.Ref("judge", ref=JUDGE_SPEC)],
        metrics={k: evaluation[k] for k in ("judge_win_rate", "judge_win_rate_ci",
                                            "proxy_win_rate", "kl")}, actor="demo")
    chain = [{"id": a.id, "kind": a.kind, "name": a.name, "path": a.path,
              "snapshot_hash": a.snapshot_hash, "code_version": a.code_version}
             for a in registry.ancestors(eval_id, db=cfg.db_url)]
    (work / "lineage.json").write_text(json.dumps(chain, indent=2, default=str))
    return {"evaluation_id": eval_id, "lineage": chain}, ["register/lineage.json"]


class Reporter:
    """Progress callbacks; the CLI passes a rich implementation, tests the silent default."""

    def start(self, stage: str) -> None: ...

    def tick(self, done: int, total: int) -> None: ...

    def note(self, text: str) -> None: ...

    def end(self, result: StageResult) -> None: ...


def run_demo(cfg: DemoConfig, reporter: Reporter | None = None) -> dict[str, StageResult]:
    """Run (or reuse) every stage in order; returns each stage's result by name.

    Stage keys chain: each stage hashes its own config section plus the output hashes of the
    stages it reads, so changing e.g. ``dpo_lr`` re-runs dpo, evaluate and register only.
    """
    rep = reporter or Reporter()
    cache = StageCache(cfg.out_dir)
    done: dict[str, StageResult] = {}

    def step(name: str, section: tuple[str, ...], deps: tuple[str, ...],
             fn: Callable[[Path], tuple[dict[str, Any], list[str]]]) -> dict[str, Any]:
        rep.start(name)
        inputs = {"stage": name, "config": cfg.section("quick", *section),
                  "deps": {d: done[d].output_hash for d in deps}}
        result = cache.run(name, inputs, fn)
        done[name] = result
        rep.end(result)
        return result.outputs

    models = step("models", ("policy_model", "reward_backbone", "seed"), (),
                  lambda w: stage_models(cfg, w))
    step("generate", ("train_prompts", "k", "gen_max_new_tokens", "gen_temperature",
                      "gen_top_p", "gen_batch_size", "seed"), ("models",),
         lambda w: stage_generate(cfg, models, w, rep.tick))
    step("label", (), ("generate",), lambda w: stage_label(cfg, w, rep.tick))
    step("store", (), ("label",), lambda w: stage_store(cfg, w))
    snap = step("snapshot", ("snapshot_test_fraction", "seed"), ("store",),
                lambda w: stage_snapshot(cfg, w))
    step("audit", (), ("snapshot",), lambda w: stage_audit(cfg, snap, w))
    reward = step("reward", ("rm_epochs", "rm_lr", "rm_batch_size", "rm_max_length", "seed"),
                  ("models", "snapshot"), lambda w: stage_reward(cfg, models, snap, w))
    dpo_out = step("dpo", ("dpo_loss", "dpo_beta", "dpo_lr", "dpo_epochs", "dpo_batch_size",
                           "dpo_lora_r", "dpo_max_length", "seed"), ("models", "snapshot", "reward"),
                   lambda w: stage_dpo(cfg, models, snap, reward, w))
    evaluation = step("evaluate", ("eval_prompts", "eval_samples", "eval_max_new_tokens",
                                   "eval_temperature", "gen_batch_size", "seed"),
                      ("models", "reward", "dpo"),
                      lambda w: stage_evaluate(cfg, models, reward, dpo_out, w, rep.note))
    step("register", (), ("snapshot", "reward", "dpo", "evaluate"),
         lambda w: stage_register(cfg, snap, reward, dpo_out, evaluation, w))
    return done
