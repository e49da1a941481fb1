"""Best-of-N: sample N candidates per prompt, score each, keep the best.

One scoring interface serves best-of-N at inference (``prefline generate --best-of N``),
as an evaluation baseline (``eval policy --baseline best-of-4:default``), as rejection
sampling for SFT, and as the labeller of online DPO and the over-optimisation monitor:

    scorer = make_scorer("reward:runs/rm/model")    # or "rules", "python:rewards.py:fn", ...
    picks = best_of_n(model, tok, prompts, n=4, scorer=scorer)

A :class:`CandidateScorer` maps ``(prompt, responses)`` to one float per response, higher
is better. Three kinds, named by one spec string:

- ``reward:DIR`` (or a bare reward-model folder): the model's normalised reward;
- any judge spec (``rules``, ``openai:URL``, ``lm:PATH``; see :mod:`prefline.judges`): a
  pointwise judge (``rules``) gives its ``overall`` rating; a pairwise-only judge compares
  every two candidates and a candidate's score is its share of wins (a tie is half a win),
  the Copeland score — N(N-1)/2 judgments per prompt;
- ``python:MODULE:FUNC`` or ``python:FILE.py:FUNC``: ``FUNC(prompt_text, response) ->
  float``, for verifiable rewards (a checked answer, a format rule) and toy tasks.

Ties between best scores go to the first candidate, so picks are reproducible.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prefline.base.errors import PreflineError
from prefline.base.stage import StageResult
from prefline.formats.examples import Messages, as_messages, prompt_text
from prefline.formats.jsonl import read_jsonl
from prefline.generate.backend import Backend, Completion, Sampling
from prefline.generate.io import generation_record, read_generations, write_jsonl
from prefline.generate.run import GenerateConfig, GenerateResult
from prefline.generate.run import run as run_generate
from prefline.generate.sampling import generate
from prefline.judges import make_judge, parse_spec
from prefline.judges.base import Judge, judge_all
from prefline.store.context import Context

PYTHON = "python:"
REWARD = "reward:"
SCORER_SPECS = ("reward:DIR | a reward-model folder | rules | openai:URL[#model] | lm:PATH | "
                "python:MODULE:FUNC | python:FILE.py:FUNC")
POINTWISE = ("rules", "reward")
"""Judge kinds whose ``rate`` scores one response alone (the others only compare two)."""

Prompt = str | Messages


class CandidateScorer(Protocol):
    """Scores candidate responses to one prompt; higher is better."""

    spec: str
    """What built it (recorded with the scores and in lineage)."""

    def score(self, prompt: Prompt, responses: Sequence[str]) -> list[float]: ...


@dataclass
class RewardScorer:
    """A trained reward model (single or ensemble): its normalised rewards."""

    spec: str
    model: Any
    """Anything with ``score(prompt, responses)`` (:class:`prefline.models.reward.Scorer`)."""

    def score(self, prompt: Prompt, responses: Sequence[str]) -> list[float]:
        return [float(s) for s in self.model.score(prompt, list(responses))]


@dataclass
class JudgeScorer:
    """A judge: its ``overall`` (or only) rating when pointwise, else Copeland wins."""

    spec: str
    judge: Judge
    pointwise: bool

    def score(self, prompt: Prompt, responses: Sequence[str]) -> list[float]:
        if self.pointwise:
            return [_rating(self.judge.rate(prompt, r)) for r in responses]
        return copeland(self.judge, prompt, responses)


@dataclass
class PythonScorer:
    """A Python function ``fn(prompt_text, response) -> float``."""

    spec: str
    fn: Callable[[str, str], float]

    def score(self, prompt: Prompt, responses: Sequence[str]) -> list[float]:
        text = prompt_text(as_messages(prompt))
        return [float(self.fn(text, r)) for r in responses]


def _rating(rating: dict[str, float]) -> float:
    if "overall" in rating:
        return float(rating["overall"])
    if len(rating) == 1:
        return float(next(iter(rating.values())))
    raise PreflineError(f"the judge rated several criteria {sorted(rating)} and no 'overall'; "
                        "cannot rank candidates by one number", field="judge")


def copeland(judge: Judge, prompt: Prompt, responses: Sequence[str]) -> list[float]:
    """Each response's share of wins against the others (a tie counts half; one response
    scores 0.5): N(N-1)/2 judgments, each pair once in a fixed order."""
    n = len(responses)
    if n < 2:
        return [0.5] * n
    pairs = list(itertools.combinations(range(n), 2))
    verdicts = judge_all(judge, [(prompt, responses[i], responses[j]) for i, j in pairs])
    wins = [0.0] * n
    for (i, j), v in zip(pairs, verdicts, strict=True):
        wins[i] += 1.0 if v.choice == "a" else 0.5 if v.choice == "tie" else 0.0
        wins[j] += 1.0 if v.choice == "b" else 0.5 if v.choice == "tie" else 0.0
    return [w / (n - 1) for w in wins]


def check_scorer_spec(spec: str, field: str = "reward") -> None:
    """Refuse a spec that names no scorer, before any model loads (no imports, no files read
    beyond existence checks)."""
    if spec.startswith(PYTHON):
        where, sep, func = spec[len(PYTHON):].rpartition(":")
        if not sep or not where or not func:
            raise PreflineError(f"expected python:MODULE:FUNC or python:FILE.py:FUNC, got "
                                f"{spec!r}", field=field)
        return
    if spec.startswith(REWARD) or Path(spec).is_dir():
        return
    try:
        parse_spec(spec)
    except PreflineError:
        raise PreflineError(f"unknown scorer {spec!r}; expected {SCORER_SPECS}",
                            field=field) from None


def _python_function(spec: str) -> Callable[[str, str], float]:
    where, _, func = spec[len(PYTHON):].rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise PreflineError("reward function file not found", path=where, field="reward")
        loader = importlib.util.spec_from_file_location(f"prefline_reward_{path.stem}", path)
        assert loader is not None and loader.loader is not None
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise PreflineError(f"cannot import {where!r} ({exc})", field="reward") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise PreflineError(f"{where} has no function {func!r}", field="reward")
    return fn  # type: ignore[no-any-return]


def make_scorer(spec: str, field: str = "reward") -> CandidateScorer:
    """The scorer named by ``spec`` (see the module docstring)."""
    check_scorer_spec(spec, field)
    if spec.startswith(PYTHON):
        return PythonScorer(spec, _python_function(spec))
    if spec.startswith(REWARD) or Path(spec).is_dir():
        from prefline.models.reward import load_reward_model  # torch: only when used

        path = spec.removeprefix(REWARD)
        if not Path(path).is_dir():
            raise PreflineError("reward model folder does not exist", path=path, field=field)
        return RewardScorer(spec, load_reward_model(path))
    kind, _ = parse_spec(spec)
    return JudgeScorer(spec, make_judge(spec), pointwise=kind in POINTWISE)


def argmax(scores: Sequence[float]) -> int:
    """Index of the highest score; the first one on ties."""
    if not scores:
        raise PreflineError("no candidates to pick from")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


@dataclass(frozen=True)
class Picked:
    """One prompt's N candidates, their scores, and which one was picked."""

    candidates: list[str]
    scores: list[float]
    best: int

    @property
    def response(self) -> str:
        return self.candidates[self.best]

    def record(self, scorer: str) -> dict[str, Any]:
        """The fields best-of-N adds to a generation record."""
        return {"scores": [round(s, 6) for s in self.scores], "best": self.best,
                "best_response": self.response, "scorer": scorer}


def pick(scorer: CandidateScorer, prompts: Sequence[Prompt],
         candidates: Sequence[Sequence[str]],
         on_prompt: Callable[[int], None] | None = None) -> list[Picked]:
    """Score every prompt's candidates and pick the best of each."""
    out = []
    for prompt, cands in zip(prompts, candidates, strict=True):
        scores = scorer.score(prompt, cands)
        if len(scores) != len(cands):
            raise PreflineError(f"scorer {scorer.spec} returned {len(scores)} scores for "
                                f"{len(cands)} candidates", field="reward")
        out.append(Picked(list(cands), scores, argmax(scores)))
        if on_prompt is not None:
            on_prompt(1)
    return out


def best_of_n(model: Any, tokenizer: Any, prompts: Sequence[Prompt], n: int,
              scorer: CandidateScorer, **sampling: Any) -> list[Picked]:
    """Sample ``n`` candidates per prompt (``sampling``: the keyword arguments of
    :func:`prefline.generate.sampling.generate`) and pick the best of each."""
    if n < 1:
        raise PreflineError(f"best-of-N needs N >= 1, got {n}", field="best_of")
    return pick(scorer, prompts, generate(model, tokenizer, prompts, n=n, **sampling))


def read_best_of_n(path: str | Path) -> list[tuple[Messages, str]] | None:
    """``(prompt, best response)`` per line of a ``prefline generate --best-of N`` file, or
    None when ``path`` is not one (its first record has no ``best``)."""
    path = Path(path)
    if path.suffix not in (".jsonl", ".json"):
        return None
    first = next(iter(read_jsonl(path)), None)
    if first is None or not isinstance(first[1], dict) or "best" not in first[1]:
        return None
    out = []
    for (line, rec), gen in zip(read_jsonl(path), read_generations(path), strict=True):
        best = rec.get("best")
        if not isinstance(best, int) or not 0 <= best < len(gen.responses):
            raise PreflineError(f"expected 'best' to index one of the {len(gen.responses)} "
                                "responses", path=str(path), line=line, field="best")
        out.append((gen.prompt, gen.responses[best]))
    return out


@dataclass
class BestOfNResult(StageResult):
    """``prefline generate --best-of N``: the sampling, the scorer and what picking gained."""

    generation: GenerateResult
    scorer: str
    mean_score: float
    """Mean score of every candidate (what one sample scores on average)."""
    mean_best_score: float
    """Mean score of the picked candidates."""


def run_best_of_n(cfg: GenerateConfig, ctx: Context) -> BestOfNResult:
    """Sample ``cfg.best_of`` candidates per prompt with the generate stage, score them, and
    rewrite ``cfg.out`` with every candidate's score and the pick of each prompt. The scorer
    loads first, so a bad ``--reward``/``--judge`` fails before any sampling."""
    if cfg.best_of is None:
        raise PreflineError("run_best_of_n needs best_of", field="best_of")
    spec, field = (cfg.reward, "reward") if cfg.reward is not None else (cfg.judge, "judge")
    scorer = make_scorer(spec or "", field)
    gen = run_generate(dataclasses.replace(cfg, n=cfg.best_of), ctx)
    gens = read_generations(cfg.out)
    with ctx.progress.bar(len(gens), f"scoring ({scorer.spec})") as bar:
        picks = pick(scorer, [g.prompt for g in gens], [g.responses for g in gens],
                     on_prompt=bar.advance)
    write_jsonl(cfg.out, ({**generation_record(g), **p.record(scorer.spec)}
                          for g, p in zip(gens, picks, strict=True)))
    every = [s for p in picks for s in p.scores]
    return BestOfNResult(gen, scorer.spec, sum(every) / len(every),
                         sum(p.scores[p.best] for p in picks) / len(picks))


BEST_OF = "best-of-"


def parse_best_of(spec: str) -> tuple[int, str] | None:
    """``best-of-N:MODEL`` -> ``(N, MODEL)``; None for any other model setting."""
    if not spec.startswith(BEST_OF):
        return None
    count, sep, model = spec[len(BEST_OF):].partition(":")
    if not sep or not count.isdigit() or int(count) < 1 or not model:
        raise PreflineError(f"expected best-of-N:MODEL (e.g. best-of-4:default), got {spec!r}",
                            field="baseline")
    return int(count), model


@dataclass
class BestOfNBackend:
    """A generation backend whose every completion is the best of ``best_of`` samples of
    ``inner`` under ``scorer``: best-of-N as a policy (e.g. an evaluation baseline)."""

    inner: Backend
    best_of: int
    scorer: CandidateScorer
    name: str = dataclasses.field(init=False)
    model: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.name, self.model = self.inner.name, f"{BEST_OF}{self.best_of}:{self.inner.model}"

    def config(self) -> dict[str, Any]:
        return {**self.inner.config(), "best_of": self.best_of, "scorer": self.scorer.spec}

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling,
                 on_done: Callable[[int], None] | None = None) -> list[list[Completion]]:
        """``sampling.n`` completions per prompt, the j-th the best of the j-th group of
        ``best_of`` samples (``best_of · n`` sampled per prompt)."""
        wide = dataclasses.replace(sampling, n=sampling.n * self.best_of)
        out = []
        for prompt, comps in zip(prompts, self.inner.generate(prompts, wide, on_done),
                                 strict=True):
            scores = self.scorer.score(prompt, [c.text for c in comps])
            groups = range(0, len(comps), self.best_of)
            out.append([comps[g + argmax(scores[g:g + self.best_of])] for g in groups])
        return out
