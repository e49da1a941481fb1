"""Settings of the policy evaluation stage (torch-free, so the CLI can derive its options
without loading models; the stage itself is :func:`prefline.evaluate.policy.run`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prefline.base.config import check_at_least, check_sampling
from prefline.base.errors import PreflineError
from prefline.base.tracking import check_report_to
from prefline.generate.backend import parse_backend
from prefline.generate.best_of_n import parse_best_of
from prefline.judges import parse_spec

ARTIFACT = "artifact:"
"""Prefix of a model given as a registered artifact (``artifact:12``)."""


@dataclass(frozen=True)
class PolicyEvalConfig:
    """Policy A against baseline B on held-out prompts, under a judge (and a proxy reward)."""

    policy: str
    """Policy A: model folder, Hub id, .gguf file, 'default' (embedded SmolLM2-135M-Instruct)
    or artifact:ID (a registered model; the evaluation's lineage then names it)."""
    baseline: str
    """Baseline B, usually the model A was trained from (same forms as policy), or
    best-of-N:MODEL (each response the best of N samples of MODEL under --reward)."""
    prompts: str = "bundled:eval"
    """Held-out prompts: JSONL (prompt, optional id and category), a text file with one prompt
    per line, or bundled:eval. Categories should_refuse / should_not_refuse get refusal rates."""
    judge: str = "rules"
    """The headline judge, a held-out one: rules | rules:CONFIG.json | rubric | rm-hh[:DATA] |
    openai:URL[#model] | reward:DIR | lm:PATH. It must not be the judge that labelled A's
    training data (labelling_judge) nor the proxy reward model."""
    labelling_judge: str | None = None
    """The judge that labelled A's training data (the annotator): scored in the matrix with
    the role labelling, and refused as the headline."""
    heldout_judges: tuple[str, ...] = ()
    """More held-out judges scored beside the headline (e.g. rm-hh, openai:URL#model): every
    one is a row of the judge matrix."""
    reward: str | None = None
    """Reward model folder or artifact:ID (a single model or an ensemble) for the proxy win
    rate beside the judge's: a gap between them shows over-optimisation of the proxy."""
    n_samples: int = 1
    """Responses per prompt per policy; A's j-th response is compared with B's j-th."""
    max_new_tokens: int = 64
    """New tokens per response at most."""
    temperature: float = 0.7
    """Sampling temperature for both policies; 0 = greedy."""
    top_p: float = 0.95
    """Nucleus sampling for both policies."""
    seed: int = 0
    """Seed of sampling, of the judge's left/right order and of the bootstrap."""
    batch_size: int = 16
    """Sequences per generate call."""
    backend: str = "hf"
    """Generation engine of both policies: hf (in-process), vllm, openai:URL (policy and
    baseline are then model names on that server; the KL is not measured); see
    docs/generation.md."""
    n_boot: int = 2000
    """Bootstrap resamples (over prompts) for the 95% confidence intervals."""
    report: Path | None = None
    """Write an HTML report with figures to this file (its folder must exist)."""
    report_to: Literal["none", "tensorboard", "mlflow"] = "none"
    """Also send the metrics, settings and output paths to TensorBoard (<run>/tensorboard) or
    MLflow (MLFLOW_TRACKING_URI; mlflow's default store when unset)."""

    def __post_init__(self) -> None:
        check_report_to(self.report_to)
        for name in ("policy", "baseline", "prompts"):
            if not getattr(self, name).strip():
                raise PreflineError("expected a non-empty value", field=name)
        for spec in (self.judge, *self.heldout_judges,
                     *((self.labelling_judge,) if self.labelling_judge else ())):
            parse_spec(spec)
        check_headline(self.judge, self.labelling_judge, self.reward, self.heldout_judges)
        if parse_best_of(self.baseline) is not None and self.reward is None:
            raise PreflineError("a best-of-N baseline needs --reward, the reward model that "
                                "picks its responses", field="baseline")
        parse_backend(self.backend)
        check_at_least(self, 1, "n_samples", "max_new_tokens", "batch_size")
        check_sampling(self.temperature, self.top_p)
        if self.n_boot < 100:
            raise PreflineError(f"expected at least 100 bootstrap resamples, got {self.n_boot}",
                                field="n_boot")
        for name in ("policy", "baseline", "reward"):
            value = getattr(self, name)
            if value and value.startswith(ARTIFACT) and not value[len(ARTIFACT):].isdigit():
                raise PreflineError(f"expected artifact:<id>, got {value!r}", field=name)


def check_headline(judge: str, labelling: str | None, reward: str | None,
                   heldout: tuple[str, ...] = ()) -> None:
    """The headline judge must be held out: not the labelling judge, not the proxy reward
    model (``reward:`` of the same folder), and no judge is both held out and labelling."""
    if labelling is not None and judge == labelling:
        raise PreflineError(f"the headline judge {judge!r} labelled the policy's training data; "
                            "use a held-out judge (e.g. rubric, rm-hh, openai:URL)", field="judge")
    if reward is not None and judge in (f"reward:{reward}", reward):
        raise PreflineError(f"the headline judge {judge!r} is the proxy reward model; use a "
                            "held-out judge (e.g. rubric, rm-hh, openai:URL)", field="judge")
    if labelling is not None and labelling in heldout:
        raise PreflineError(f"{labelling!r} is the labelling judge, so it cannot be held out",
                            field="heldout_judges")
