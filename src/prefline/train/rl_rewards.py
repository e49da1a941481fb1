"""Rewards for online RL: a reward model (or an ensemble's mean - λ·std), any judge, or a
Python function; and a few verifiable reward functions to name as ``module:function``.

Every source becomes one callable ``score(prompts, completions, columns) -> rewards``:
``prompts`` and ``completions`` are aligned lists (a prompt repeated k times, its
completions adjacent), ``columns`` holds ``completion_ids`` and the prompt file's other
fields, one value per completion.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

import torch

from prefline.base.errors import PreflineError
from prefline.judges import make_judge
from prefline.judges.base import judge_all
from prefline.models.reward import RewardEnsemble, load_reward_model, place_reward_model
from prefline.train.rl_config import RewardSource

Score = Callable[[list[Any], list[str], dict[str, list[Any]]], list[float]]


def load_function(spec: str) -> Callable[..., Sequence[float]]:
    """The function named ``module:function``; PreflineError naming reward_fn otherwise."""
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise PreflineError(f"cannot load reward function {spec!r}: {e}", field="reward_fn") from e
    if not callable(fn):
        raise PreflineError(f"reward function {spec!r} is not callable", field="reward_fn")
    return fn  # type: ignore[no-any-return]


def _from_function(spec: str) -> Score:
    fn = load_function(spec)

    def score(prompts: list[Any], completions: list[str], cols: dict[str, list[Any]]) -> list[float]:
        out = [float(x) for x in fn(prompts, completions, **cols)]
        if len(out) != len(completions):
            raise PreflineError(f"reward function {spec} returned {len(out)} rewards for "
                                f"{len(completions)} completions", field="reward_fn")
        return out

    return score


def _from_reward_model(path: str, penalty: float, device: torch.device | None) -> Score:
    model = load_reward_model(path)
    if device is not None:  # scored where the policy trains (the CPU: nothing moves)
        place_reward_model(model, device)
    if penalty and not isinstance(model, RewardEnsemble):
        raise PreflineError(f"uncertainty_penalty needs an ensemble; {path} holds one model",
                            field="uncertainty_penalty")

    def score(prompts: list[Any], completions: list[str], cols: dict[str, list[Any]]) -> list[float]:
        items = list(zip(prompts, completions, strict=True))
        if isinstance(model, RewardEnsemble) and penalty:
            s = model.member_scores(items)
            return [float(x) for x in s.mean(0) - penalty * s.std(0)]
        return [float(x) for x in model.score_items(items)]

    return score


def _groups(prompts: list[Any]) -> list[list[int]]:
    """Runs of adjacent equal prompts (a prompt's k completions)."""
    out: list[list[int]] = []
    for i, p in enumerate(prompts):
        if out and prompts[out[-1][0]] == p:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _from_judge(spec: str) -> Score:
    judge = make_judge(spec)

    def score(prompts: list[Any], completions: list[str], cols: dict[str, list[Any]]) -> list[float]:
        pairs = [(g[0], a, b) for g in _groups(prompts) for a, b in combinations(g, 2)]
        verdicts = judge_all(judge, [(prompts[p], completions[a], completions[b])
                                     for p, a, b in pairs])
        wins = [0.0] * len(completions)
        games = [0] * len(completions)
        for (_, a, b), v in zip(pairs, verdicts, strict=True):
            share = {"a": 1.0, "b": 0.0}.get(v.choice, 0.5)
            wins[a] += share
            wins[b] += 1.0 - share
            games[a] += 1
            games[b] += 1
        return [w / g if g else 0.5 for w, g in zip(wins, games, strict=True)]

    return score


def make_scorer(source: RewardSource, device: torch.device | None = None) -> Score:
    """The source as one scoring function (see the module docstring); a reward model runs
    on ``device``."""
    if source.reward_fn:
        return _from_function(source.reward_fn)
    if source.reward_model:
        return _from_reward_model(source.reward_model, source.uncertainty_penalty, device)
    return _from_judge(str(source.judge))


# ----- verifiable rewards (name them as prefline.train.rl_rewards:<function>) ------------------

def lowercase_share(prompts: Sequence[Any], completions: Sequence[str],
                    **_: Any) -> list[float]:
    """Share of a completion's characters that are ASCII lowercase letters (0 if empty): the
    toy task of the tests, learnable by a tiny random model in a few dozen steps."""
    return [sum("a" <= ch <= "z" for ch in c) / len(c) if c else 0.0 for c in completions]


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def exact_answer(prompts: Sequence[Any], completions: Sequence[str],
                 answer: Sequence[Any] | None = None, **_: Any) -> list[float]:
    """1.0 when the last number in the completion equals the prompt's ``answer`` column
    (a checked maths answer), else 0.0."""
    if answer is None:
        raise PreflineError("exact_answer needs an 'answer' field on every prompt line",
                            field="reward_fn")
    out = []
    for c, a in zip(completions, answer, strict=True):
        found = _NUMBER.findall(c.replace(",", ""))
        out.append(float(bool(found) and float(found[-1]) == float(a)))
    return out


def think_answer_format(prompts: Sequence[Any], completions: Sequence[str],
                        **_: Any) -> list[float]:
    """1.0 for ``<think>…</think>`` followed by ``<answer>…</answer>``, else 0.0 (a format
    rule)."""
    pattern = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.S)
    return [float(bool(pattern.match(c))) for c in completions]
