"""The policy evaluation stage: is policy A better than baseline B on prompts neither was
trained on?

    result = run(PolicyEvalConfig(policy="runs/dpo/model", baseline="default"), ctx)

Both policies sample ``n_samples`` responses per prompt with the same settings; the judge
compares A's j-th response with B's j-th (the side A is shown on alternates, seeded, so a
position-biased judge cannot favour either policy); the reward model, when given, compares
the same pairs, so the proxy's win rate sits beside the judge's and over-optimisation of the
proxy shows as a gap. KL(A‖B) is estimated on A's own samples, exactly per token, for the
sampling distributions and at temperature 1 (:mod:`prefline.evaluate.kl`). Confidence intervals come from
a bootstrap over *prompts* (each prompt's n samples move together), because samples of one
prompt are not independent evidence. The result is an ``evaluation`` artifact whose inputs
name the policy, the reference model (B), the judge and the reward model; the caller records it.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import select

from prefline.base import interrupts
from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.base.progress import Reporter, StepProgress
from prefline.base.stage import Ref
from prefline.base.tracking import log_run
from prefline.evaluate.kl import KLSums, kl_figures, response_kls
from prefline.evaluate.policy_config import ARTIFACT, PolicyEvalConfig
from prefline.evaluate.policy_judges import Judged, judges_of
from prefline.evaluate.policy_metrics import (
    outcome_score,
    words,
)
from prefline.evaluate.policy_report import write_policy_report
from prefline.evaluate.policy_result import (
    JudgeOutcome,
    NamedInput,
    PolicyEvalResult,
    ProxyOutcome,
    examples,
    judge_outcome,
    rate_with_ci,
    side_stats,
    verdict,
)
from prefline.formats.examples import Messages
from prefline.generate.backend import Backend, Sampling
from prefline.generate.backends import make_backend
from prefline.generate.best_of_n import BestOfNBackend, RewardScorer, parse_best_of
from prefline.generate.hf_backend import HFBackend
from prefline.generate.io import PromptRow, read_prompt_rows
from prefline.generate.sampling import render_prompts
from prefline.judges.base import Judge, judge_all
from prefline.models.embedded import DEFAULT_POLICY
from prefline.models.reward import Scorer, load_reward_model
from prefline.store.context import Context
from prefline.store.models import Artifact

STAGES = ("sample policy", "sample baseline", "kl", "judge", "proxy reward")
KL_BATCH = 8
"""Completions per forward pass when measuring log-probs for the KL estimate."""
PROXY_PROMPTS = 16
"""Prompts whose responses (A's and B's) the reward model scores in one call."""
Model = tuple[Any, Any]
"""A loaded ``(model, tokenizer)``."""


def run(cfg: PolicyEvalConfig, ctx: Context) -> PolicyEvalResult:
    """Load A, B, the judge and the reward model named by ``cfg``; compare; write
    ``eval.json`` into the run folder (when the context has one) and ``cfg.report``.

    Nothing is written until the evaluation is complete: interrupted, it leaves no partial
    ``eval.json`` or report, and says so in the interrupt line."""
    if cfg.report is not None and not cfg.report.parent.exists():
        raise PreflineError(f"folder {cfg.report.parent} does not exist", path=str(cfg.report),
                            field="report")
    rows = read_prompt_rows(cfg.prompts)
    best_of = parse_best_of(cfg.baseline)  # best-of-N:MODEL: the baseline is MODEL + picking
    (policy, policy_ref, policy_named), (baseline, base_ref, base_named) = (
        _resolve(ctx, "policy", cfg.policy),
        _resolve(ctx, "reference_model", best_of[1] if best_of else cfg.baseline))
    judged = judges_of(cfg, ctx)  # the headline first; rm-hh is built (or cached) here
    inputs = [policy_ref, base_ref, *(Ref("judge", ref=spec) for spec, _, _ in judged)]
    named = {"policy": policy_named, "baseline": base_named, "judge": NamedInput(cfg.judge),
             "prompts": NamedInput(cfg.prompts, content_hash=content_hash(
                 [[r.id, r.prompt] for r in rows]))}
    proxy = None
    if cfg.reward is not None:
        reward_path, reward_ref, named["reward_model"] = _resolve(ctx, "reward_model", cfg.reward)
        if reward_path is None:  # "default" names the embedded policy, not a reward model
            raise PreflineError("expected a reward model folder or artifact:ID", field="reward")
        proxy = load_reward_model(reward_path)
        inputs.append(reward_ref)
    try:
        b: Backend = _load(baseline, cfg, ctx)
        if best_of is not None and proxy is not None:  # the config requires reward for it
            b = BestOfNBackend(b, best_of[0], RewardScorer(f"reward:{reward_path}", proxy))
        result = compare(_load(policy, cfg, ctx), b, rows, judged[0][2], cfg, proxy,
                         progress=ctx.progress, others=judged[1:])
    except interrupts.INTERRUPTS:
        interrupts.keep(interrupts.Kept(
            "before the evaluation finished; nothing was written or registered (eval.json "
            "and the report are written only when it is complete)", resume_flag=None))
        raise
    path = ctx.require_run_dir() / "eval.json" if ctx.run_dir is not None else None
    result = dataclasses.replace(result, inputs=tuple(inputs), named_inputs=named, path=path)
    if result.path is not None:
        tmp = result.path.with_name(result.path.name + ".tmp")  # whole, or not at all
        tmp.write_text(json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
        tmp.replace(result.path)
    if cfg.report is not None:
        write_policy_report(result.to_json(), cfg.report)
    if cfg.report_to != "none":
        log_run(cfg.report_to, ctx.require_run_dir(), dataclasses.asdict(cfg),
                result.to_json(), {"result": result.path, "report": cfg.report})
    return result


def compare(a: Model | Backend, b: Model | Backend, rows: Sequence[PromptRow], judge: Judge,
            cfg: PolicyEvalConfig, proxy: Scorer | None = None,
            on_stage: Callable[[str], None] | None = None,
            progress: Reporter | None = None, others: Sequence[Judged] = ()) -> PolicyEvalResult:
    """A (``a``) against B (``b``) on ``rows`` with loaded models or generation backends: the
    evaluation without lineage. ``proxy`` is anything with ``score(prompt, responses) ->
    list[float]`` (``score_items`` too: then scored in batches); ``on_stage`` is called with
    each name in :data:`STAGES` as it starts; ``progress`` shows a bar per stage (per
    sampling batch, log-prob batch, judged pair, scored prompt). The KL needs both models
    in-process (``hf``); with other backends it is not measured (``kl`` None). ``kl`` is
    KL(A‖B) of the sampling distributions (``cfg.temperature`` and ``cfg.top_p``), ``kl_t1``
    the models' own (temperature 1): see :mod:`prefline.evaluate.kl`. ``judge`` is the
    headline (``cfg.judge``, held out); ``others`` are the matrix's further ``(spec, role,
    judge)`` rows, judged on the same pairs."""
    if not rows:
        raise PreflineError("the evaluation needs at least one prompt", field="prompts")
    bars = progress if progress is not None else Reporter(enabled=False)

    def stage(i: int, total: int) -> StepProgress:
        if on_stage is not None:
            on_stage(STAGES[i])
        return bars.bar(total, f"{STAGES[i]} ({cfg.judge})" if STAGES[i] == "judge"
                        else STAGES[i])

    texts = [r.prompt for r in rows]
    a, b = _as_backend(a, cfg), _as_backend(b, cfg)
    sampling = Sampling(n=cfg.n_samples, max_new_tokens=cfg.max_new_tokens,
                        temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed)
    gen: dict[str, Any] = {**sampling.settings(), "batch_size": cfg.batch_size}
    with stage(0, len(rows)) as bar:
        resp_a = [[c.text for c in cs] for cs in a.generate(texts, sampling, bar.advance)]
    with stage(1, len(rows)) as bar:
        resp_b = [[c.text for c in cs] for cs in b.generate(texts, sampling, bar.advance)]
    kls = _kls(a, b, texts, resp_a, cfg, stage)
    len_diff = [[float(len(words(x)) - len(words(y))) for x, y in zip(ra, rb, strict=True)]
                for ra, rb in zip(resp_a, resp_b, strict=True)]
    judged: list[Judged] = [(cfg.judge, "held-out", judge), *others]
    with stage(3, sum(map(len, resp_a)) * len(judged)) as bar:
        matrix, scores = _judge_rows(judged, rows, resp_a, resp_b, len_diff, cfg, bar.advance)
    outcome, proxy_outcome = matrix[0], None
    if proxy is not None:
        with stage(4, len(rows)) as bar:
            proxy_outcome, proxy_row = _proxy_row(proxy, rows, resp_a, resp_b, len_diff, cfg,
                                                  bar.advance)
        matrix.append(proxy_row)
    named = {"policy": NamedInput(cfg.policy), "baseline": NamedInput(cfg.baseline),
             "judge": NamedInput(cfg.judge), "prompts": NamedInput(cfg.prompts)}
    return PolicyEvalResult(
        judge=outcome, kl=kls["kl"], kl_t1=kls["kl_t1"], kl_nucleus_miss=kls["kl_nucleus_miss"],
        policy=side_stats(rows, resp_a), baseline=side_stats(rows, resp_b), n_prompts=len(rows),
        examples=examples(rows, resp_a, resp_b, scores, cfg.seed),
        verdict=verdict(outcome.win_rate, outcome.ci, cfg.judge),
        sampling={**gen, "n_boot": cfg.n_boot}, named_inputs=named, proxy=proxy_outcome,
        matrix=tuple(matrix))


def _kls(a: Backend, b: Backend, texts: Sequence[Messages | str], resp_a: list[list[str]],
         cfg: PolicyEvalConfig, stage: Callable[[int, int], StepProgress]
         ) -> dict[str, float | None]:
    """``kl``, ``kl_t1`` and ``kl_nucleus_miss`` of A's samples (None unless both models are
    in-process: the KL needs their log-probs)."""
    if not (isinstance(a, HFBackend) and isinstance(b, HFBackend)):
        return {"kl": None, "kl_t1": None, "kl_nucleus_miss": None}
    flat_prompts = [t for t, rs in zip(texts, resp_a, strict=True) for _ in rs]
    flat_a = [r for rs in resp_a for r in rs]
    with stage(2, 2 * -(-len(flat_a) // KL_BATCH)) as bar:
        return kl_figures(policy_kls(
            (a.lm, a.tokenizer), (b.lm, b.tokenizer), flat_prompts, flat_a,
            cfg.temperature if cfg.temperature > 0 else 1.0,
            cfg.top_p, on_batch=bar.advance), greedy=cfg.temperature <= 0)


def _proxy_row(proxy: Scorer, rows: Sequence[PromptRow], resp_a: list[list[str]],
               resp_b: list[list[str]], len_diff: list[list[float]], cfg: PolicyEvalConfig,
               on_done: Callable[[int], None]) -> tuple[ProxyOutcome, JudgeOutcome]:
    """The reward model as a judge on the same pairs: its outcome, and its matrix row."""
    proxy_scores, rew_a, rew_b = _proxy_pairs(proxy, rows, resp_a, resp_b, on_done)
    p = rate_with_ci(proxy_scores, cfg.n_boot, cfg.seed)
    outcome = ProxyOutcome(p.win_rate, p.ci, p.n, float(np.mean(rew_a)), float(np.mean(rew_b)))
    return outcome, judge_outcome(cfg.reward or "reward model", "proxy", {"reward": cfg.reward},
                                  rows, proxy_scores, len_diff, cfg.n_boot, cfg.seed)


def _judge_rows(judged: Sequence[Judged], rows: Sequence[PromptRow], resp_a: list[list[str]],
                resp_b: list[list[str]], len_diff: list[list[float]], cfg: PolicyEvalConfig,
                on_done: Callable[[int], None]) -> tuple[list[JudgeOutcome], list[list[float]]]:
    """A matrix row per judge (same pairs, same seeded sides), and the first (headline)
    judge's per-prompt scores, which pick the side-by-side examples."""
    matrix: list[JudgeOutcome] = []
    headline: list[list[float]] = []
    for k, (spec, role, j) in enumerate(judged):
        scores = _judge_pairs(j, rows, resp_a, resp_b, cfg.seed, on_done=on_done)
        headline = scores if k == 0 else headline
        matrix.append(judge_outcome(spec, role, j.config(), rows, scores, len_diff,
                                    cfg.n_boot, cfg.seed))
    return matrix, headline


KINDS = {"policy": "policy", "reference_model": "policy", "reward_model": "reward_model"}
"""The registry kind a model named by its folder is looked up as, per input role."""


def _resolve(ctx: Context, role: str, value: str) -> tuple[str | None, Ref, NamedInput]:
    """``(what to load, input Ref, how to name it)`` for a model setting: ``artifact:ID``
    loads a registered artifact's path and links to it; ``default`` is the embedded policy;
    else a path (linked to its artifact when one is registered there) or a Hub id."""
    if value.startswith(ARTIFACT):
        art_id = int(value[len(ARTIFACT):])
        with ctx.store.session() as s:
            art = s.get(Artifact, art_id)
            if art is None:
                raise PreflineError(f"no artifact with id {art_id} in the store", field=role)
            return art.path, Ref(role, artifact_id=art_id), NamedInput(value, art_id, art.path)
    if value == "default":
        return None, Ref(role, ref=DEFAULT_POLICY), NamedInput(value, path=DEFAULT_POLICY)
    found = _registered_at(ctx, value, KINDS[role])
    if found is not None:
        return value, Ref(role, artifact_id=found), NamedInput(value, found, value)
    return value, Ref(role, ref=value), NamedInput(value, path=value)


def _registered_at(ctx: Context, value: str, kind: str) -> int | None:
    """The latest artifact of ``kind`` registered at the folder ``value`` (None: none, or
    ``value`` is not a local path)."""
    where = Path(value)
    if not where.exists():
        return None
    with ctx.store.session() as s:
        found = s.scalars(select(Artifact.id).where(
            Artifact.path == str(where.resolve()), Artifact.kind == kind)
            .order_by(Artifact.id.desc()).limit(1)).first()
    return int(found) if found is not None else None


def _load(path: str | None, cfg: PolicyEvalConfig, ctx: Context) -> Backend:
    """The generation backend of ``cfg`` sampling from ``path`` (bf16 weights where native)."""
    return make_backend(cfg.backend, path, device=ctx.device, precision="auto",
                        batch_size=cfg.batch_size)


def _as_backend(model: Model | Backend, cfg: PolicyEvalConfig) -> Backend:
    """A loaded ``(model, tokenizer)`` as an ``hf`` backend (as ``compare``'s callers pass)."""
    if isinstance(model, tuple):
        return HFBackend(loaded=model, device=str(next(model[0].parameters()).device),
                         batch_size=cfg.batch_size)
    return model


def policy_kls(a: Model, b: Model, prompts: Sequence[str | Messages], completions: Sequence[str],
               temperature: float, top_p: float, batch_size: int = KL_BATCH,
               on_batch: Callable[[int], None] | None = None) -> KLSums:
    """Per-response KL sums of A's ``completions`` (see :mod:`prefline.evaluate.kl`): both
    models read the same token ids (A's tokenizer; they must share the vocabulary), and at
    each response position the exact per-token KL over the vocabulary is summed.

    Completions are re-tokenised from text, so the tokens can differ slightly from the
    sampled ones; ``on_batch`` is called once per model forward pass."""
    (model_a, tokenizer), (model_b, tok_b) = a, b
    if len(tokenizer) != len(tok_b):
        raise PreflineError(f"the KL needs one vocabulary: the policy's tokenizer has "
                            f"{len(tokenizer)} tokens, the baseline's {len(tok_b)}", field="baseline")
    rows = [(tokenizer(head, add_special_tokens=False)["input_ids"],
             tokenizer(text, add_special_tokens=False)["input_ids"])
            for head, text in zip(render_prompts(tokenizer, prompts), completions, strict=True)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sums = KLSums([], [], [], [])
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(p) + len(c) for p, c in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        span = max(1, max(len(c) for _, c in chunk))
        at = torch.zeros((len(chunk), span), dtype=torch.long)  # positions predicting A's tokens
        resp = torch.zeros_like(at)
        for k, (p, c) in enumerate(chunk):  # right padding: positions stay 0..len-1
            ids[k, :len(p) + len(c)] = torch.tensor(p + c)
            mask[k, :len(p) + len(c)] = 1
            at[k, :len(c)] = torch.arange(len(p) - 1, len(p) + len(c) - 1)  # t predicted at t-1
            resp[k, :len(c)] = 1
        logits = []
        for model in (model_a, model_b):
            device = next(model.parameters()).device
            with torch.inference_mode():
                out = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            # Only the response positions (the prompt's would multiply the memory); embeddings
            # can be padded past the tokenizer: those logits are no tokens.
            vocab = out[..., :len(tokenizer)]
            index = at.to(device)[..., None].expand(-1, -1, vocab.shape[-1])
            logits.append(vocab.gather(1, index).float().cpu())
            if on_batch is not None:
                on_batch(1)
        got = response_kls(logits[0], logits[1], resp, temperature, top_p)
        for field in ("sampling", "t1", "misses", "positions"):
            getattr(sums, field).extend(getattr(got, field))
    return sums


def _judge_pairs(judge: Judge, rows: Sequence[PromptRow], resp_a: list[list[str]],
                 resp_b: list[list[str]], seed: int,
                 on_done: Callable[[int], None] | None = None) -> list[list[float]]:
    """A's score per (prompt, sample): the judge sees A on the left for a seeded half."""
    rng = random.Random(seed)
    items, flips = [], []
    for row, ra, rb in zip(rows, resp_a, resp_b, strict=True):
        for a, b in zip(ra, rb, strict=True):
            flip = rng.random() < 0.5
            flips.append(flip)
            items.append((row.prompt, b, a) if flip else (row.prompt, a, b))
    verdicts = judge_all(judge, items, on_done=on_done)
    flat = [outcome_score(v.swapped().choice if f else v.choice)
            for v, f in zip(verdicts, flips, strict=True)]
    n = len(resp_a[0]) if resp_a else 0
    return [flat[i * n:(i + 1) * n] for i in range(len(rows))]


def _proxy_pairs(reward: Any, rows: Sequence[PromptRow], resp_a: list[list[str]],
                 resp_b: list[list[str]], on_prompt: Callable[[int], None] | None = None,
                 ) -> tuple[list[list[float]], list[float], list[float]]:
    """The reward model as a judge: higher reward wins, equal rewards tie. Also the rewards.

    A and B's responses of :data:`PROXY_PROMPTS` prompts are scored in one ``score_items``
    call (one padded batch pass instead of one per prompt); a scorer with only ``score``
    is asked prompt by prompt."""
    scores: list[list[float]] = []
    rewards_a: list[float] = []
    rewards_b: list[float] = []
    for start in range(0, len(rows), PROXY_PROMPTS):
        chunk = range(start, min(start + PROXY_PROMPTS, len(rows)))
        items = [(rows[i].prompt, r) for i in chunk for r in [*resp_a[i], *resp_b[i]]]
        flat = (reward.score_items(items) if hasattr(reward, "score_items") else
                [x for i in chunk for x in reward.score(rows[i].prompt,
                                                        [*resp_a[i], *resp_b[i]])])
        at = 0
        for i in chunk:
            ra, rb = resp_a[i], resp_b[i]
            a_r, b_r = flat[at:at + len(ra)], flat[at + len(ra):at + len(ra) + len(rb)]
            at += len(ra) + len(rb)
            rewards_a += a_r
            rewards_b += b_r
            # Identical texts tie: batched (bf16) scoring can differ in the last bits for them.
            scores.append([0.5 if ta == tb else 1.0 if x > y else 0.0 if x < y else 0.5
                           for ta, tb, x, y in zip(ra, rb, a_r, b_r, strict=True)])
        if on_prompt is not None:
            on_prompt(len(chunk))
    return scores, rewards_a, rewards_b
