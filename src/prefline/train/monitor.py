"""The over-optimisation monitor every online run carries (best-of-N, online DPO, RL).

Every ``every`` steps (rounds, for online DPO) it samples the policy on a *fixed* prompt set
with fixed seeds, so only the policy changes between measurements, and records:

- ``proxy``: mean score of the signal being optimised (the reward model or judge that trains);
- ``kl``: KL(π‖π_ref) in nats per response, the mean over π's samples of the exact
  per-token KL summed along each response (:func:`response_kl`), against the *initial*
  reference, so the x-axis of Gao et al. (2022) stays one axis;
- ``length``: mean response tokens; ``distinct_1``/``distinct_2``: unique word uni/bigrams
  over all samples divided by their count (collapse onto one answer shows here first);
- ``gold`` (optional): mean score of a held-out judge that produced no training signal.

Proxy rising while gold falls is reward hacking; the monitor stops the run when KL passes
``kl_budget`` or when gold has fallen more than ``gold_tolerance`` below its best for
``gold_patience`` measurements in a row. Records go to ``monitor.jsonl`` and
:func:`overoptimisation_plot` draws gold and proxy against KL.

    monitor = Monitor(prompts, every=1, proxy=scorer, gold_judge=gold, kl_budget=20.0,
                      path=run_dir / "monitor.jsonl")
    rec = monitor.maybe_measure(step, policy_lm, tokenizer, reference_lm)
    if monitor.stop_reason: ...
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prefline.base.errors import PreflineError
from prefline.base.plots import new_figure, png_bytes
from prefline.formats.examples import UnpairedExample, as_messages
from prefline.generate.backend import Sampling
from prefline.generate.best_of_n import CandidateScorer, Prompt
from prefline.generate.sampling import generate
from prefline.train.policy_batch import encode_unpaired

__all__ = ["Monitor", "MonitorRecord", "distinct_n", "overoptimisation_plot", "response_kl"]

_BATCH = 8  # completions per forward pass: bounds the (batch, tokens, vocab) logits


@dataclass
class MonitorRecord:
    """One measurement (a line of ``monitor.jsonl``)."""

    step: int
    proxy: float
    kl: float
    length: float
    distinct_1: float
    distinct_2: float
    gold: float | None = None
    samples: int = 0


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique word n-grams over all ``texts`` / their total count (0 when there are none)."""
    grams = [tuple(w[i:i + n]) for t in texts for w in [t.split()]
             for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _rows(tokenizer: Any, prompts: Sequence[Prompt], responses: Sequence[str],
          ) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) as policy training tokenises them (end of turn included)."""
    examples = [UnpairedExample(as_messages(p), r, True)
                for p, r in zip(prompts, responses, strict=True)]
    items, _ = encode_unpaired(examples, tokenizer, 1 << 20, required=False)
    if len(items) != len(examples):
        raise PreflineError("every response to measure must be non-empty")
    return [(list(it.prompt), list(it.completion)) for it in items]


def _response_logprobs(lm: nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                       spans: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Per response, the ``(tokens, vocab)`` log-distributions that predict its tokens."""
    logits = lm(input_ids=ids, attention_mask=mask).logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    return [logp[k, a - 1:b - 1] for k, (a, b) in enumerate(spans)]


def response_kl(lm: nn.Module, reference: nn.Module, tokenizer: Any, prompts: Sequence[Prompt],
                responses: Sequence[str]) -> torch.Tensor:
    """``(n,)`` KL(π‖π_ref) of each response in nats: Σ over its tokens t of the full
    KL(π(·|x, y<t) ‖ π_ref(·|x, y<t)) over the vocabulary.

    Summing the exact per-token KL along the response (rather than log π(y) − log π_ref(y)
    of the sampled tokens) never goes negative and does not need the exact sampled token
    ids: sampling returns text, and text re-tokenises to other ids whenever a sampled token
    decodes lossily, which biases the sampled-token estimator badly on tiny models."""
    rows = _rows(tokenizer, prompts, responses)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    states = (lm.training, reference.training)
    lm.eval()
    reference.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(rows), _BATCH):
            chunk = rows[s:s + _BATCH]
            width = max(len(p) + len(r) for p, r in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for k, (p, r) in enumerate(chunk):  # right padding: positions stay 0..len-1
                ids[k, :len(p) + len(r)] = torch.tensor(p + r)
                mask[k, :len(p) + len(r)] = 1
            spans = [(len(p), len(p) + len(r)) for p, r in chunk]
            device = next(lm.parameters()).device
            ids, mask = ids.to(device), mask.to(device)
            for lp, lq in zip(_response_logprobs(lm, ids, mask, spans),
                              _response_logprobs(reference, ids, mask, spans), strict=True):
                out.append(float((lp.exp() * (lp - lq)).sum()))
    lm.train(states[0])
    reference.train(states[1])
    return torch.tensor(out, dtype=torch.float64)


@dataclass
class Monitor:
    """See the module docstring. ``sampling``: how the policy is sampled at every
    measurement (the same seed each time, so only the policy changes)."""

    prompts: Sequence[Prompt]
    every: int
    proxy: CandidateScorer
    gold_judge: CandidateScorer | None = None
    kl_budget: float | None = None
    gold_patience: int = 2
    gold_tolerance: float = 0.0
    sampling: Sampling = Sampling(n=1, max_new_tokens=64, temperature=1.0)
    path: Path | None = None
    records: list[MonitorRecord] = field(default_factory=list)
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        if not self.prompts:
            raise PreflineError("the monitor needs at least one prompt", field="monitor_prompts")
        if self.every < 1:
            raise PreflineError("monitor every must be at least 1", field="monitor_every")
        if self.kl_budget is not None and self.kl_budget <= 0:
            raise PreflineError("kl_budget must be positive (or unset)", field="kl_budget")
        if self.gold_patience < 1:
            raise PreflineError("gold_patience must be at least 1", field="gold_patience")

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def maybe_measure(self, step: int, lm: nn.Module, tokenizer: Any,
                      reference: nn.Module) -> MonitorRecord | None:
        """:meth:`measure` when ``step`` is due (step 0 is: the starting point of the curve)."""
        return self.measure(step, lm, tokenizer, reference) if self.due(step) else None

    def measure(self, step: int, lm: nn.Module, tokenizer: Any,
                reference: nn.Module) -> MonitorRecord:
        """Sample, score and compare with ``reference``; append to ``records`` and to
        ``path``; set :attr:`stop_reason` when a stop rule fires."""
        s = self.sampling
        samples = generate(lm, tokenizer, self.prompts, n=s.n, max_new_tokens=s.max_new_tokens,
                           temperature=s.temperature, top_p=s.top_p, seed=s.seed, threads=None)
        proxy = [s for p, rs in zip(self.prompts, samples, strict=True)
                 for s in self.proxy.score(p, rs)]
        gold = ([s for p, rs in zip(self.prompts, samples, strict=True)
                 for s in self.gold_judge.score(p, rs)] if self.gold_judge is not None else None)
        flat_p = [p for p, rs in zip(self.prompts, samples, strict=True) for r in rs if r.strip()]
        flat_r = [r for rs in samples for r in rs if r.strip()]
        texts = [r for rs in samples for r in rs]
        kl = 0.0
        if flat_r:  # an empty response is just end-of-turn; the KL of the rest stands for it
            kl = float(response_kl(lm, reference, tokenizer, flat_p, flat_r).mean())
        lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
        rec = MonitorRecord(step=step, proxy=_mean(proxy), kl=kl, length=_mean(lengths),
                            distinct_1=distinct_n(texts, 1), distinct_2=distinct_n(texts, 2),
                            gold=_mean(gold) if gold is not None else None, samples=len(texts))
        self.records.append(rec)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(asdict(rec)) + "\n")
        self.stop_reason = self.stop_reason or self.stop_rule(self.records)
        return rec

    def stop_rule(self, records: Sequence[MonitorRecord]) -> str | None:
        """Why to stop after the last of ``records`` (None: go on)."""
        rec = records[-1]
        if self.kl_budget is not None and rec.kl > self.kl_budget:
            return f"KL {rec.kl:.3f} passed the budget {self.kl_budget} at step {rec.step}"
        golds = [r.gold for r in records if r.gold is not None]
        if len(golds) <= self.gold_patience:
            return None
        best = max(golds[:-self.gold_patience])
        recent = golds[-self.gold_patience:]
        if all(g < best - self.gold_tolerance for g in recent):
            return (f"gold score fell below its best {best:.4f} for {self.gold_patience} "
                    f"measurements in a row (last {recent[-1]:.4f}) at step {rec.step}")
        return None


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


def overoptimisation_plot(records: Sequence[MonitorRecord], path: Path) -> Path:
    """Gold and proxy score against KL (Gao et al. 2022), as a PNG at ``path``."""
    fig, ax = new_figure()
    pts = sorted(records, key=lambda r: r.kl)
    ax.plot([r.kl for r in pts], [r.proxy for r in pts], "o-", label="proxy (optimised)")
    gold = [r for r in pts if r.gold is not None]
    if gold:
        ax2 = ax.twinx()  # gold and proxy are on different scales
        ax2.plot([r.kl for r in gold], [r.gold for r in gold], "s--", color="tab:orange",
                 label="gold (held out)")
        ax2.set_ylabel("gold score")
        ax2.legend(loc="lower right")
    ax.set_xlabel("KL(π‖π_ref), nats per response")
    ax.set_ylabel("proxy score")
    ax.legend(loc="upper left")
    ax.set_title("over-optimisation: proxy and gold against KL")
    path.write_bytes(png_bytes(fig))
    return path
