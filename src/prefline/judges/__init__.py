"""AI judges: compare two responses (pairwise) or score one (pointwise).

``make_judge(spec)`` builds one from a short spec string, as used by ``prefline judge``:

- ``rules`` / ``rules:CONFIG.json`` — the deterministic principle judge (optional weights file);
- ``openai:URL[#model]`` — any OpenAI-compatible chat-completions server (vLLM, llama.cpp,
  Ollama, hosted APIs); ``options`` carries the rest (api_key_env, template, timeout, ...);
- ``reward:DIR`` — a trained prefline reward model;
- ``lm:PATH`` — any local causal LM, asked "A or B?" in both orders;
- ``rubric`` — the helpful/correct/harmless rubric written independently of ``rules``
  (:mod:`prefline.judges.rubric`): a held-out judge for policies trained on ``rules`` labels;
- ``rm-hh`` / ``rm-hh:DATA`` — a reward model trained on human preference data (HH-RLHF),
  built on first use by :mod:`prefline.evaluate.policy_judges` (it trains, so it lives above
  the training layer; ``make_judge`` here refuses it with a pointer).
"""

from __future__ import annotations

import inspect
from typing import Any

from prefline.base.errors import PreflineError
from prefline.judges.base import Judge, Verdict
from prefline.judges.http import HttpJudge
from prefline.judges.local_lm import LocalLMJudge
from prefline.judges.principles import PrincipleConfig, PrincipleJudge
from prefline.judges.reward_model import RewardModelJudge
from prefline.judges.rubric import RubricJudge

SPECS = "rules, rules:CONFIG.json, rubric, rm-hh[:DATA], openai:URL[#model], reward:DIR, lm:PATH"
KINDS = ("rules", "rubric", "rm-hh", "openai", "reward", "lm")
NO_ARGUMENT = ("rules", "rubric", "rm-hh")
"""Kinds whose argument after ':' is optional."""


def _build(factory: Any, *args: Any, **options: Any) -> Any:
    """Call ``factory`` with ``options``, naming unknown option keys in a PreflineError."""
    params = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise PreflineError(f"unknown judge option(s) {unknown}; expected some of "
                            f"{sorted(p for p in params if p not in ('path', 'base_url'))}",
                            field="judge options")
    return factory(*args, **options)


def parse_spec(spec: str) -> tuple[str, str]:
    """``(kind, argument)`` of a judge spec; an unknown kind or a missing argument is a
    PreflineError naming the ``judge`` field (checked before any model loads)."""
    kind, _, arg = spec.partition(":")
    if kind not in KINDS:
        raise PreflineError(f"unknown judge {spec!r}; expected one of {SPECS}", field="judge")
    if kind == "rubric" and arg:
        raise PreflineError(f"judge spec {spec!r}: rubric takes no argument", field="judge")
    if kind not in NO_ARGUMENT and not arg:
        raise PreflineError(f"judge spec {spec!r} needs an argument after ':'; expected one of "
                            f"{SPECS}", field="judge")
    return kind, arg


def make_judge(spec: str, options: dict[str, Any] | None = None) -> Judge:
    """Build the judge named by ``spec``; ``options`` are extra keyword arguments for it."""
    kind, arg = parse_spec(spec)
    options = dict(options or {})
    if kind == "rules":
        cfg = PrincipleConfig.from_file(arg) if arg else _build(PrincipleConfig, **options)
        return PrincipleJudge(cfg)
    if kind == "rubric":
        return RubricJudge()
    if kind == "rm-hh":
        raise PreflineError("rm-hh is trained on first use by `prefline eval policy` "
                            "(prefline.evaluate.policy_judges.build_judge); elsewhere pass the "
                            "built model as reward:DIR", field="judge")
    if kind == "openai":
        url, _, model = arg.partition("#")
        if model:
            options["model"] = model
        return _build(HttpJudge, url, **options)
    if kind == "reward":
        return _build(RewardModelJudge, arg, **options)
    return _build(LocalLMJudge, arg, **options)


__all__ = ["Judge", "Verdict", "make_judge", "parse_spec", "SPECS"]
