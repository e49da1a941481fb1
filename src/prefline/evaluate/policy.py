"""``evaluate_policy``: is policy A better than baseline B on prompts neither was trained on?

Both policies sample ``n_samples`` responses per prompt with the same settings; the judge
compares A's j-th response with B's j-th (the side A is shown on alternates, seeded, so a
position-biased judge cannot favour either policy); the reward model, when given, compares
the same pairs, so the proxy's win rate sits beside the judge's and over-optimisation of the
proxy shows as a gap. KL(A‖B) is estimated on A's own samples. Confidence intervals come from
a bootstrap over *prompts* (each prompt's n samples move together), because samples of one
prompt are not independent evidence.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from prefline.evaluate.policy_metrics import (
    distinct_n,
    length_controlled_win_rate,
    mean_kl,
    mean_length,
    outcome_score,
    win_rate,
    words,
)
from prefline.evaluate.stats import bootstrap_ci
from prefline.formats.examples import Messages, as_messages
from prefline.judges.refusal import refusal_rate

REFUSAL_SLICES = ("should_refuse", "should_not_refuse")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SamplingConfig:
    """How both policies sample during evaluation (identical for A and B)."""

    n_samples: int = 1
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 16
    n_boot: int = 2000


def as_prompt_rows(prompts: Sequence[str | Messages | dict[str, Any]]) -> list[dict[str, Any]]:
    """Normalise prompts to ``{"id", "prompt", "category"}`` rows (category may be None)."""
    rows = []
    for i, p in enumerate(prompts):
        if isinstance(p, dict) and "prompt" in p:
            rows.append({"id": str(p.get("id", i)), "prompt": p["prompt"],
                         "category": p.get("category")})
        else:
            rows.append({"id": str(i), "prompt": p, "category": None})
    return rows


def completion_logprobs(model: Any, tokenizer: Any, prompts: Sequence[str | Messages],
                        completions: Sequence[str], batch_size: int = 8) -> list[list[float]]:
    """Per-token log-probs (nats) of each completion given its chat-templated prompt.

    Returns one list per completion, one float per completion token. Completions are
    re-tokenised from text, so the tokens can differ slightly from the sampled ones; that
    affects A and B identically and only adds a little noise to the KL estimate.
    """
    import torch

    from prefline.generate.sampling import render_prompts

    heads = render_prompts(tokenizer, prompts)
    rows = []
    for head, text in zip(heads, completions, strict=True):
        p_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        rows.append((p_ids, c_ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[list[float]] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(p) + len(c) for p, c in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for k, (p, c) in enumerate(chunk):  # right padding: positions stay 0..len-1
            ids[k, :len(p) + len(c)] = torch.tensor(p + c)
            mask[k, :len(p) + len(c)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        tok_lp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        for k, (p, c) in enumerate(chunk):
            # token t of the sequence is predicted at position t-1
            out.append(tok_lp[k, len(p) - 1:len(p) + len(c) - 1].tolist())
    return out


def _judge_pairs(judge: Any, rows: list[dict[str, Any]], resp_a: list[list[str]],
                 resp_b: list[list[str]], seed: int) -> list[list[float]]:
    """A's score per (prompt, sample): the judge sees A on the left for a seeded half."""
    from prefline.judges.base import judge_all

    rng = random.Random(seed)
    items, flips = [], []
    for row, ra, rb in zip(rows, resp_a, resp_b, strict=True):
        for a, b in zip(ra, rb, strict=True):
            flip = rng.random() < 0.5
            flips.append(flip)
            items.append((row["prompt"], b, a) if flip else (row["prompt"], a, b))
    verdicts = judge_all(judge, items)
    flat = [outcome_score(v.swapped().choice if f else v.choice)
            for v, f in zip(verdicts, flips, strict=True)]
    n = len(resp_a[0]) if resp_a else 0
    return [flat[i * n:(i + 1) * n] for i in range(len(rows))]


def _proxy_pairs(reward: Any, rows: list[dict[str, Any]], resp_a: list[list[str]],
                 resp_b: list[list[str]]) -> tuple[list[list[float]], list[float], list[float]]:
    """The reward model as a judge: higher reward wins, equal rewards tie. Also the rewards."""
    scores, rewards_a, rewards_b = [], [], []
    for row, ra, rb in zip(rows, resp_a, resp_b, strict=True):
        r = reward.score(row["prompt"], list(ra) + list(rb))
        a_r, b_r = r[:len(ra)], r[len(ra):]
        rewards_a += a_r
        rewards_b += b_r
        scores.append([1.0 if x > y else 0.0 if x < y else 0.5 for x, y in zip(a_r, b_r, strict=True)])
    return scores, rewards_a, rewards_b


def rate_with_ci(per_prompt: list[list[float]], n_boot: int, seed: int) -> dict[str, Any]:
    """Win rate over all comparisons and its 95% bootstrap CI over prompts."""
    flat = [s for row in per_prompt for s in row]
    means = [float(np.mean(row)) for row in per_prompt if row]
    low, high = bootstrap_ci(means, n_boot=n_boot, seed=seed)
    return {"win_rate": win_rate(flat), "ci": [low, high], "n": len(flat)}


def side_stats(rows: list[dict[str, Any]], responses: list[list[str]]) -> dict[str, Any]:
    """Length, diversity and per-slice refusal rates of one policy's responses."""
    flat = [r for rs in responses for r in rs]
    out: dict[str, Any] = {"mean_length_words": mean_length(flat),
                           "distinct_1": distinct_n(flat, 1), "distinct_2": distinct_n(flat, 2),
                           "refusal_rate": {}, "lengths": [len(words(t)) for t in flat]}
    for name in REFUSAL_SLICES:
        texts = [r for row, rs in zip(rows, responses, strict=True)
                 if row["category"] == name for r in rs]
        out["refusal_rate"][name] = refusal_rate(texts)
    out["refusal_rate"]["all"] = refusal_rate(flat)
    return out


def _per_category(rows: list[dict[str, Any]], scores: list[list[float]]) -> dict[str, float]:
    cats: dict[str, list[float]] = {}
    for row, s in zip(rows, scores, strict=True):
        cats.setdefault(str(row["category"]), []).extend(s)
    return {c: win_rate(v) for c, v in sorted(cats.items())}


def _examples(rows: list[dict[str, Any]], resp_a: list[list[str]], resp_b: list[list[str]],
              scores: list[list[float]], k: int = 6) -> list[dict[str, Any]]:
    """The first sample of the first prompt in each category: side by side, not cherry-picked."""
    picked: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        cat = str(row["category"])
        if cat in seen:
            continue
        seen.add(cat)
        picked.append({"id": row["id"], "category": row["category"],
                       "prompt": as_messages(row["prompt"])[-1]["content"],
                       "policy": resp_a[i][0], "baseline": resp_b[i][0],
                       "judge_score": scores[i][0]})
        if len(picked) >= k:
            break
    return picked


def _load(policy: Any) -> tuple[Any, Any]:
    if isinstance(policy, tuple):
        return policy
    from prefline.generate.sampling import load_policy

    return load_policy(None if policy in (None, "default") else str(policy), precision="auto")


def evaluate_policy(
    policy: Any, baseline: Any, prompts: Sequence[str | Messages | dict[str, Any]], judge: Any,
    proxy_reward: Any = None, *, sampling: SamplingConfig | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Compare ``policy`` (A) with ``baseline`` (B) on ``prompts``; a JSON-ready dict.

    ``policy``/``baseline``: a model path or Hub id (None: the embedded default) or a loaded
    ``(model, tokenizer)``. ``prompts``: strings, message lists or rows with ``prompt`` and
    ``category`` (categories ``should_refuse``/``should_not_refuse`` get refusal rates).
    ``judge``: any :class:`prefline.judges.base.Judge`. ``proxy_reward``: an object with
    ``score(prompt, responses) -> list[float]`` (a reward model), optional. ``progress``:
    called ``(stage, done, total)``. Metrics are documented in ``docs/demo.md``.
    """
    from prefline.generate.sampling import generate

    cfg = sampling or SamplingConfig()
    rows = as_prompt_rows(prompts)
    if not rows:
        raise ValueError("evaluate_policy needs at least one prompt")
    say = progress or (lambda stage, done, total: None)
    texts = [r["prompt"] for r in rows]
    gen: dict[str, Any] = {"n": cfg.n_samples, "max_new_tokens": cfg.max_new_tokens,
           "temperature": cfg.temperature, "top_p": cfg.top_p, "seed": cfg.seed,
           "batch_size": cfg.batch_size}
    model_a, tok_a = _load(policy)
    say("sample policy", 0, 1)
    resp_a = generate(model_a, tok_a, texts, **gen)
    model_b, tok_b = _load(baseline)
    say("sample baseline", 0, 1)
    resp_b = generate(model_b, tok_b, texts, **gen)
    say("kl", 0, 1)
    flat_prompts = [t for t, rs in zip(texts, resp_a, strict=True) for _ in rs]
    flat_a = [r for rs in resp_a for r in rs]
    kl = mean_kl(completion_logprobs(model_a, tok_a, flat_prompts, flat_a),
                 completion_logprobs(model_b, tok_b, flat_prompts, flat_a))
    say("judge", 0, 1)
    scores = _judge_pairs(judge, rows, resp_a, resp_b, cfg.seed)
    flat_scores = [s for row in scores for s in row]
    len_diff = [len(words(a)) - len(words(b)) for ra, rb in zip(resp_a, resp_b, strict=True)
                for a, b in zip(ra, rb, strict=True)]
    result: dict[str, Any] = {
        "judge": {**rate_with_ci(scores, cfg.n_boot, cfg.seed),
                  "length_controlled_win_rate": length_controlled_win_rate(flat_scores, len_diff),
                  "per_category": _per_category(rows, scores),
                  "config": getattr(judge, "config", dict)()},
        "kl": kl, "policy": side_stats(rows, resp_a), "baseline": side_stats(rows, resp_b),
        "sampling": asdict(cfg), "n_prompts": len(rows),
        "examples": _examples(rows, resp_a, resp_b, scores),
    }
    if proxy_reward is not None:
        say("proxy reward", 0, 1)
        proxy, rew_a, rew_b = _proxy_pairs(proxy_reward, rows, resp_a, resp_b)
        result["proxy"] = {**rate_with_ci(proxy, cfg.n_boot, cfg.seed),
                           "mean_reward_policy": float(np.mean(rew_a)),
                           "mean_reward_baseline": float(np.mean(rew_b))}
    result["verdict"] = verdict(result["judge"]["win_rate"], result["judge"]["ci"])
    return result


TARGET_WIN_RATE = 0.60


def verdict(rate: float, ci: Sequence[float]) -> dict[str, Any]:
    """Plain-language outcome against the target: win rate ≥ 60% with CI lower bound > 50%."""
    met = rate >= TARGET_WIN_RATE and ci[0] > 0.5
    if met:
        text = (f"The policy beats the baseline: judge win rate {rate:.1%} "
                f"(95% CI {ci[0]:.1%}–{ci[1]:.1%}) meets the target of ≥ 60% with the CI above 50%.")
    elif ci[0] > 0.5:
        text = (f"The policy is better than the baseline but misses the target: judge win rate "
                f"{rate:.1%} (95% CI {ci[0]:.1%}–{ci[1]:.1%}) is below 60%.")
    else:
        text = (f"No demonstrated improvement: judge win rate {rate:.1%} (95% CI "
                f"{ci[0]:.1%}–{ci[1]:.1%}); the CI does not exclude 50% (no better than the baseline).")
    return {"target_met": met, "text": text}


