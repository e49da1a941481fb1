"""Online / iterative DPO: ``run(cfg: OnlineDPOConfig, ctx) -> OnlineDPOResult``.

Each round: draw prompts → sample ``k`` candidates per prompt from the *current* policy →
score them with the labeller (a reward model, any judge, or a Python reward; see
:mod:`prefline.generate.best_of_n`) → make pairs (best against worst, or every pair whose
scores differ) → optionally mix in offline pairs (semi-online) → one DPO stage on them
(:func:`prefline.train.dpo.fit_policy`, the same stage as ``prefline train dpo``) → the
monitor (:mod:`prefline.train.monitor`) measures proxy, KL, length, diversity and the gold
judge, and may stop the run. The reference is the initial policy (online DPO, Guo et al.
2024) or, with ``refresh_reference``, the policy at the start of each round (iterative DPO,
Xiong et al. 2024).

Every round leaves ``round-NNN/`` (its candidates and scores in ``candidates.jsonl``, the
DPO run, the exported policy) and a line in ``rounds.jsonl``; the caller registers each
round's policy with its lineage (previous round's policy, labeller, pairs). ``resume``
restarts after the last finished round from its exported weights: rounds are seeded by
their number, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.base.stage import Ref, StageResult
from prefline.formats.examples import PreferencePair, as_messages
from prefline.formats.load import load_pairs
from prefline.generate.backend import Sampling
from prefline.generate.best_of_n import CandidateScorer, Picked, make_scorer, pick
from prefline.generate.hf_backend import HFBackend
from prefline.generate.io import read_prompt_rows, write_jsonl
from prefline.models.embedded import DEFAULT_POLICY
from prefline.models.hub import load_causal_lm
from prefline.store.context import Context
from prefline.train.dpo import fit_policy
from prefline.train.monitor import Monitor, MonitorRecord, overoptimisation_plot
from prefline.train.online_dpo_config import OnlineDPOConfig
from prefline.train.policy_data import FeedbackUse, picked_data

__all__ = ["OnlineDPOConfig", "OnlineDPOResult", "RoundResult", "make_pairs", "run"]


@dataclass
class RoundResult(StageResult):
    """One round's policy: an artifact of its own (the caller registers every round)."""

    artifact_kind: ClassVar[str] = "policy"

    round: int
    path: Path
    metrics: dict[str, Any]
    """``reward`` (mean labeller score of the round's candidates, before its update),
    ``pairs``, ``offline_pairs``, ``dpo`` (last step's loss/accuracy/margin) and
    ``monitor`` (the measurement after the round, when due)."""
    inputs: tuple[Ref, ...]
    """The previous round's policy (``ref`` = its folder; the caller links the artifact),
    or the base model; the labeller; the pairs (content hash); offline data."""
    snapshot_hash: str
    """Content hash of the round's training pairs."""


@dataclass
class OnlineDPOResult(StageResult):
    """The run: its rounds, the final policy, the monitor's curve and why it stopped."""

    path: Path
    """The last round's policy."""
    run_dir: Path
    rounds: list[RoundResult]
    monitor: list[dict[str, Any]]
    stop_reason: str | None
    plot: Path | None
    """Gold and proxy against KL (``overoptimisation.png``), when the monitor ran."""
    policy: Any = field(default=None, repr=False, compare=False)

    json_omit: ClassVar[tuple[str, ...]] = ("policy",)
    """The in-memory model stays out of JSON."""


def make_pairs(prompts: Sequence[Any], picks: Sequence[Picked], how: str,
               min_gap: float = 0.0) -> list[PreferencePair]:
    """Pairs from scored candidates: ``best_vs_worst`` (argmax against argmin, one per
    prompt) or ``all`` (every two candidates); only pairs whose scores differ by more than
    ``min_gap`` and whose texts differ."""
    out = []
    for prompt, p in zip(prompts, picks, strict=True):
        s, c = p.scores, p.candidates
        if how == "best_vs_worst":
            worst = min(range(len(s)), key=lambda i: (s[i], i))
            combos = [(p.best, worst)]
        else:
            combos = [(i, j) if s[i] >= s[j] else (j, i)
                      for i in range(len(s)) for j in range(i + 1, len(s))]
        for a, b in combos:
            if s[a] - s[b] > min_gap and c[a] != c[b]:
                out.append(PreferencePair(as_messages(prompt), c[a], c[b]))
    return out


@dataclass
class _Run:
    """What the rounds share: the settings, the loaded pieces and where things go."""

    cfg: OnlineDPOConfig
    ctx: Context
    out: Path
    prompts: list[Any]
    scorer: CandidateScorer
    offline: list[PreferencePair]
    tokenizer: Any
    reference: Any
    base_model: str
    monitor: Monitor | None


def _labeller_ref(cfg: OnlineDPOConfig) -> Ref:
    if cfg.judge is not None:
        return Ref("judge", ref=cfg.judge)
    spec = cfg.reward or ""
    return Ref("judge" if spec.startswith("python:") else "reward_model",
               ref=str(Path(spec.removeprefix("reward:")).resolve())
               if not spec.startswith("python:") else spec)


def _round_prompts(r: _Run, n: int) -> list[Any]:
    count = r.cfg.prompts_per_round or len(r.prompts)
    if count >= len(r.prompts):
        return list(r.prompts)
    return random.Random(r.cfg.seed * 1000 + n).sample(r.prompts, count)


def _one_round(r: _Run, n: int, lm: Any, previous: Ref, resume: bool) -> tuple[RoundResult, Any]:
    """Sample, label, pair, train one DPO stage; returns the round and the trained model."""
    cfg = r.cfg
    prompts = _round_prompts(r, n)
    # the current policy through the hf backend (in-process, on the module itself)
    # gen_opt none (main's stream): the toy test's trajectory (lr 1e-2) was tuned on it; the
    # fast sampler's stream collapsed in round 6 for seed 0 (same reward distribution, checked)
    engine = HFBackend(loaded=(lm, r.tokenizer), device=str(next(lm.parameters()).device),
                       threads=None, gen_opt="none")
    cands = [[c.text for c in cs] for cs in engine.generate(prompts, Sampling(
        n=cfg.k, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
        top_p=cfg.top_p, seed=cfg.seed * 1000 + n))]
    picks = pick(r.scorer, prompts, cands)
    folder = r.out / f"round-{n:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "candidates.jsonl", ({"prompt": as_messages(p), "responses": k.candidates,
                                              **k.record(r.scorer.spec)}
                                             for p, k in zip(prompts, picks, strict=True)))
    online = make_pairs(prompts, picks, cfg.pairs, cfg.min_gap)
    extra = random.Random(cfg.seed * 1000 + n).sample(
        r.offline, min(len(r.offline), round(cfg.offline_fraction * len(online))))
    pairs = online + extra
    mean_reward = sum(s for k in picks for s in k.scores) / sum(len(k.scores) for k in picks)
    if not pairs:
        raise PreflineError(f"round {n}: every prompt's candidates scored alike (within "
                            f"min_gap={cfg.min_gap}); nothing to learn from - raise k or "
                            "temperature", field="k")
    data = picked_data(pairs, FeedbackUse({"online": len(online), "offline": len(extra)}, {}),
                       [[p.prompt, p.chosen, p.rejected] for p in pairs])
    digest = data.source_hash
    dpo = dataclasses.replace(cfg.dpo, snapshot=None, data=None, model=None,
                              train=dataclasses.replace(cfg.dpo.train, resume=resume,
                                                        seed=cfg.dpo.train.seed + n))
    fit = fit_policy(dpo, r.ctx.with_run_dir(folder), data, lm, r.tokenizer,
                     base_model=r.base_model,
                     reference=None if cfg.refresh_reference else r.reference)
    train = fit.metrics.get("train") or {}
    metrics: dict[str, Any] = {"reward": mean_reward, "pairs": len(online),
                               "offline_pairs": len(extra), "dpo": train}
    inputs = [previous, _labeller_ref(cfg), Ref("data", ref=digest)]
    if cfg.offline is not None:
        inputs.append(Ref("data", ref=str(Path(cfg.offline).resolve())))
    return RoundResult(round=n, path=fit.path, metrics=metrics, inputs=tuple(inputs),
                       snapshot_hash=digest), fit.policy


def _settings(cfg: OnlineDPOConfig) -> dict[str, Any]:
    """What a resumed run must share with the run it continues (all but rounds/resume)."""
    return {k: v for k, v in config.to_dict(cfg).items() if k not in ("rounds", "resume")}


def _finished(cfg: OnlineDPOConfig, out: Path) -> list[RoundResult]:
    """The rounds a resumed run keeps (after checking it is the same run)."""
    saved = out / "online_config.json"
    if not cfg.resume or not saved.exists():
        for stale in ("rounds.jsonl", "monitor.jsonl"):
            (out / stale).unlink(missing_ok=True)
        saved.write_text(json.dumps(_settings(cfg), sort_keys=True, default=str))
        return []
    before = json.loads(saved.read_text())
    now = json.loads(json.dumps(_settings(cfg), sort_keys=True, default=str))
    diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if diff:
        raise PreflineError(f"cannot resume: {out} was run with other settings "
                            f"({', '.join(diff)}); only rounds may change", field=diff[0])
    rounds = []
    log = out / "rounds.jsonl"
    for line in log.read_text().splitlines() if log.exists() else []:
        rec = json.loads(line)
        rounds.append(RoundResult(round=rec["round"], path=Path(rec["path"]),
                                  metrics=rec["metrics"], snapshot_hash=rec["snapshot_hash"],
                                  inputs=tuple(Ref(**i) for i in rec["inputs"])))
    return rounds


def _monitor(cfg: OnlineDPOConfig, out: Path) -> Monitor | None:
    if not cfg.monitor_every:
        return None
    rows = read_prompt_rows(cfg.monitor_prompts)[:cfg.monitor_limit]
    return Monitor([r.prompt for r in rows], every=cfg.monitor_every,
                   proxy=make_scorer(cfg.reward or cfg.judge or ""),
                   gold_judge=make_scorer(cfg.gold, "gold") if cfg.gold else None,
                   kl_budget=cfg.kl_budget, gold_patience=cfg.gold_patience,
                   sampling=Sampling(n=1, max_new_tokens=cfg.max_new_tokens,
                                     temperature=cfg.temperature, top_p=cfg.top_p,
                                     seed=cfg.seed),
                   path=out / "monitor.jsonl")


def _reload_monitor(monitor: Monitor, out: Path, upto: int) -> None:
    """Carry a resumed run's measurements up to round ``upto``."""
    path = out / "monitor.jsonl"
    keep = [MonitorRecord(**json.loads(x)) for x in path.read_text().splitlines()
            if json.loads(x)["step"] <= upto] if path.exists() else []
    path.write_text("".join(json.dumps(dataclasses.asdict(x)) + "\n" for x in keep))
    monitor.records = keep


def run(cfg: OnlineDPOConfig, ctx: Context) -> OnlineDPOResult:
    """Run the rounds (module docstring); fails on bad prompts, labeller or offline data
    before any policy loads."""
    out = ctx.require_run_dir()
    prompts = [r.prompt for r in read_prompt_rows(cfg.prompts)]
    scorer = make_scorer(cfg.reward or cfg.judge or "", "reward" if cfg.reward else "judge")
    offline = load_pairs(cfg.offline) if cfg.offline is not None else []
    done = _finished(cfg, out)
    base_model = cfg.model or f"embedded:{DEFAULT_POLICY}"
    lm, tok = load_causal_lm(cfg.model)
    reference = copy.deepcopy(lm).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    if done:
        lm, _ = load_causal_lm(str(done[-1].path))
    r = _Run(cfg, ctx, out, prompts, scorer, offline, tok, reference, base_model,
             _monitor(cfg, out))
    return _rounds(r, lm, done)


def _rounds(r: _Run, lm: Any, done: list[RoundResult]) -> OnlineDPOResult:
    cfg, mon = r.cfg, r.monitor
    if mon is not None:
        _reload_monitor(mon, r.out, len(done))
        if not mon.records:
            mon.maybe_measure(0, lm, r.tokenizer, r.reference)
        for i in range(len(mon.records)):
            mon.stop_reason = mon.stop_reason or mon.stop_rule(mon.records[:i + 1])
    rounds = list(done)
    start = len(done)
    for n in range(start, cfg.rounds):
        if mon is not None and mon.stop_reason:
            break
        previous = (Ref("previous_policy", ref=str(rounds[-1].path)) if rounds
                    else Ref("base_model", ref=r.base_model))
        result, lm = _one_round(r, n, lm, previous, resume=cfg.resume and n == start)
        if mon is not None:
            rec = mon.maybe_measure(n + 1, lm, r.tokenizer, r.reference)
            if rec is not None:
                result.metrics["monitor"] = dataclasses.asdict(rec)
        rounds.append(result)
        with open(r.out / "rounds.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result.to_json()) + "\n")
    plot = None
    if mon is not None and len(mon.records) > 1:
        plot = overoptimisation_plot(mon.records, r.out / "overoptimisation.png")
    return OnlineDPOResult(
        path=rounds[-1].path if rounds else Path(cfg.model or DEFAULT_POLICY), run_dir=r.out,
        rounds=rounds, monitor=[dataclasses.asdict(x) for x in (mon.records if mon else [])],
        stop_reason=mon.stop_reason if mon else None, plot=plot, policy=lm)
