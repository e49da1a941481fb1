"""The over-optimisation monitor (:mod:`prefline.train.monitor`, the one online DPO uses) in
online RL: built from :class:`~prefline.train.rl_config.MonitorConfig`, hooked into the
engine's ``evaluate`` callback, so it measures right after an optimizer step and an early
stop (KL budget, falling gold) ends the run before the next update.

The proxy is the training reward itself (:mod:`prefline.train.rl_rewards`), called with
the monitor prompts' own columns, so a verifiable reward that reads ``answer`` works on the
monitor's prompts as it does on the training prompts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from prefline.base.distributed import rank
from prefline.generate.backend import Sampling
from prefline.generate.best_of_n import Prompt, make_scorer
from prefline.train.monitor import Monitor, MonitorRecord, overoptimisation_plot
from prefline.train.rl_config import MonitorConfig, RolloutConfig
from prefline.train.rl_rewards import Score

__all__ = ["RLMonitor", "make_monitor"]


@dataclass
class _Proxy:
    """The training reward as the monitor's ``CandidateScorer``."""

    spec: str
    fn: Score
    prompts: list[Prompt]
    columns: list[dict[str, Any]]
    tokenizer: Any

    def score(self, prompt: Prompt, responses: Sequence[str]) -> list[float]:
        cols = self.columns[self.prompts.index(prompt)]
        given: dict[str, list[Any]] = {k: [v] * len(responses) for k, v in cols.items()}
        given["completion_ids"] = [self.tokenizer(r, add_special_tokens=False)["input_ids"]
                                   for r in responses]
        return self.fn([prompt] * len(responses), list(responses), given)


class RLMonitor:
    """A :class:`Monitor` measuring the policy of a running Trainer (see module docstring)."""

    def __init__(self, monitor: Monitor, tokenizer: Any, reference: nn.Module, *,
                 resume: bool) -> None:
        self.monitor, self.tok, self.ref = monitor, tokenizer, reference
        self.path = monitor.path
        monitor.path = None  # written here (rank 0 only), after a resume's stale lines go
        if not resume and self.path is not None:
            self.path.unlink(missing_ok=True)

    def start(self, lm: nn.Module, step: int) -> None:
        """Before training from ``step`` (a resumed run's checkpoint, else 0): keep the
        measurements up to it, or take the curve's starting point."""
        if not self._load(upto=step):
            self._measure(0, lm)

    def evaluate(self, trainer: Any) -> Callable[[nn.Module], dict[str, float]]:
        """The engine's ``evaluate``: measure the policy; on a stop rule end the run after
        this step (the engine trains while ``step < total``)."""
        def run(module: nn.Module) -> dict[str, float]:
            step = int(trainer.step)
            if self.monitor.records and self.monitor.records[-1].step >= step:
                self._load(upto=step - 1)  # a measurement an interrupt cut short runs again
            rec = self._measure(step, module.lm)  # type: ignore[arg-type]
            if self.monitor.stop_reason:
                trainer.total = trainer.step
            return {k: v for k, v in dataclasses.asdict(rec).items()
                    if k not in ("step", "samples") and v is not None}
        return run

    def finish(self, lm: nn.Module, steps: int, out: Path) -> Path | None:
        """Measure the final policy (when its step has no measurement); draw the plot."""
        mon = self.monitor
        if not mon.records or (mon.records[-1].step != steps and not mon.stop_reason):
            self._measure(steps, lm)
        if len(mon.records) < 2 or rank() != 0:
            return None
        return overoptimisation_plot(mon.records, out / "overoptimisation.png")

    def _measure(self, step: int, lm: nn.Module) -> MonitorRecord:
        rec = self.monitor.measure(step, lm, self.tok, self.ref)
        if self.path is not None and rank() == 0:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(dataclasses.asdict(rec)) + "\n")
        return rec

    def _load(self, upto: int) -> bool:
        """Keep the saved measurements up to step ``upto``; whether there were any."""
        path, mon = self.path, self.monitor
        lines = path.read_text().splitlines() if path is not None and path.exists() else []
        keep = [MonitorRecord(**json.loads(x)) for x in lines if json.loads(x)["step"] <= upto]
        if path is not None and rank() == 0 and path.exists():
            path.write_text("".join(json.dumps(dataclasses.asdict(x)) + "\n" for x in keep))
        mon.records = keep
        mon.stop_reason = None
        for i in range(len(keep)):
            mon.stop_reason = mon.stop_reason or mon.stop_rule(keep[:i + 1])
        return bool(keep)


def make_monitor(cfg: MonitorConfig, rollout: RolloutConfig, rows: list[dict[str, Any]],
                 score: Score, reward_spec: str, tokenizer: Any, reference: nn.Module, *,
                 seed: int, out: Path, resume: bool) -> RLMonitor | None:
    """The run's monitor on ``rows`` (prompt rows with their columns); None when off."""
    if not cfg.monitor_every:
        return None
    rows = rows[:cfg.monitor_limit]
    prompts = [r["prompt"] for r in rows]
    columns = [{k: v for k, v in r.items() if k not in ("prompt", "id", "split")} for r in rows]
    proxy = _Proxy(reward_spec, score, prompts, columns, tokenizer)
    mon = Monitor(prompts, every=cfg.monitor_every, proxy=proxy,
                  gold_judge=make_scorer(cfg.gold, "gold") if cfg.gold else None,
                  kl_budget=cfg.kl_budget, gold_patience=cfg.gold_patience,
                  sampling=Sampling(n=1, max_new_tokens=rollout.max_new_tokens,
                                    temperature=rollout.temperature, seed=seed),
                  path=out / "monitor.jsonl")
    return RLMonitor(mon, tokenizer, reference, resume=resume)
