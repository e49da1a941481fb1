"""What RLOO, GRPO and PPO share on the one training engine: prompts, the policy module,
and a Task whose ``prepare_step`` samples and scores a rollout before the step's losses.

How online RL fits the engine (train/engine.py): the engine's examples are prompts; each
optimizer step's ``prepare_step`` (no grad, every micro-batch of the step in hand, a
function that sums over processes) samples k completions per prompt with the current
policy, scores them, and computes reference log-probs and advantages, writing them into
the micro-batches; ``loss`` then computes the clipped objective. With ``iterations`` μ > 1
the rollout of step g (g a multiple of μ) is reused by steps g+1 … g+μ-1, with the
policy's log-probs at step g as the "old" ones of the importance ratio. It is kept in
memory and in ``<run>/rollouts/`` so a run resumed mid-way continues with it.

Exactness: completions are seeded per (seed, step, prompt, completion) (see
:mod:`prefline.train.rollout`), statistics over the step (reward means, whitening, the KL
controller's KL) are summed over processes, and metrics are reported as global means, so
2 processes equal 1 and a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from prefline.base import config
from prefline.base.distributed import place, rank
from prefline.base.errors import PreflineError
from prefline.base.stage import Ref, StageResult
from prefline.data import load_prompts
from prefline.formats.jsonl import read_jsonl
from prefline.generate.backend import TrainingEngine
from prefline.generate.sampling import render_prompts, stop_token_ids
from prefline.losses.online import kl_per_token
from prefline.models.embedded import DEFAULT_POLICY
from prefline.models.hub import load_causal_lm
from prefline.store.context import Context
from prefline.train import checkpoint as ckpt
from prefline.train.dpo import export_policy
from prefline.train.engine import Trainer
from prefline.train.rl_config import PPOConfig, RewardSource, RLConfig, RolloutConfig
from prefline.train.rl_monitor import RLMonitor, make_monitor
from prefline.train.rl_rewards import Score
from prefline.train.rollout import Rollout, rollout_engine, row_seed, sample_rollout, token_logps

Reduce = Callable[[list[float]], list[float]]


@dataclass(frozen=True)
class PromptExample:
    """One training prompt: its position in the prompt set (it seeds the sampling), the
    prompt as given, its rendered token ids and the file's other fields."""

    index: int
    prompt: Any
    ids: tuple[int, ...]
    columns: dict[str, Any] = field(default_factory=dict)


def read_prompt_file(path: str | None, split: str = "train") -> tuple[list[dict[str, Any]], str]:
    """Rows with a ``prompt`` (text or chat messages) and the content hash of the set
    (``path`` None: the bundled prompts' ``split``)."""
    if path is None:
        rows = [{"prompt": r["prompt"], "category": r["category"]}
                for r in load_prompts(split)]
    else:
        rows = []
        for no, rec in read_jsonl(Path(path)):
            text = rec.get("prompt", rec.get("messages")) if isinstance(rec, dict) else None
            if not (isinstance(text, str) and text.strip()) and not isinstance(text, list):
                raise PreflineError('expected an object with a "prompt" text or chat '
                                    '"messages"', path=path, line=no, field="prompt")
            rows.append({**{k: v for k, v in rec.items() if k != "messages"}, "prompt": text})
        if not rows:
            raise PreflineError("no prompts in file", path=path, field="prompts")
    blob = json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()
    return rows, hashlib.sha256(blob).hexdigest()


def encode_prompts(rows: list[dict[str, Any]], tokenizer: Any,
                   max_tokens: int) -> list[PromptExample]:
    texts = render_prompts(tokenizer, [r["prompt"] for r in rows])
    out = []
    for i, (row, text) in enumerate(zip(rows, texts, strict=True)):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][-max_tokens:]
        cols = {k: v for k, v in row.items() if k not in ("prompt", "id", "split")}
        out.append(PromptExample(i, row["prompt"], tuple(ids), cols))
    return out


class ValueHead(nn.Module):
    """Hidden states ``(B, T, H)`` -> values ``(B, T)``; starts at zero (no initial bias)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.proj(hidden.to(self.proj.weight.dtype)).squeeze(-1).float()


class PolicyModule(nn.Module):
    """The trained module: ``forward(rollout) -> (per-token log-probs, values or None)``.

    The engine wraps *this* in DDP, so the policy (and the value head, or the separate
    critic) run inside one DDP forward. ``value``: None, "head" (a head on the policy's
    last hidden state) or "critic" (a copy of the starting policy with its own head)."""

    def __init__(self, lm: Any, temperature: float, value: str | None = None) -> None:
        super().__init__()
        self.lm, self.temperature = lm, temperature
        hidden = int(lm.config.hidden_size)
        self.critic = copy.deepcopy(lm) if value == "critic" else None
        self.value_head = ValueHead(hidden) if value else None

    def forward(self, rollout: Rollout) -> tuple[Tensor, Tensor | None]:
        if self.critic is None:
            return token_logps(self.lm, rollout, self.temperature, self.value_head)
        logps, _ = token_logps(self.lm, rollout, self.temperature)
        _, values = token_logps(self.critic, rollout, self.temperature, self.value_head)
        return logps, values


def frozen_copy(lm: nn.Module) -> nn.Module:
    ref = copy.deepcopy(lm).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class OnlineTask:
    """The engine Task of online RL (see the module docstring). Subclasses add
    :meth:`finish` (advantages from the whole step) and :meth:`loss`."""

    def __init__(self, rollout: RolloutConfig, tokenizer: Any, lm: Any, score: Score,
                 ref: nn.Module | None, *, seed: int, run_dir: Path,
                 needs_old: bool, device: torch.device | None = None) -> None:
        self.cfg, self.tok, self.score, self.ref = rollout, tokenizer, score, ref
        self.seed, self.run_dir, self.needs_old = seed, run_dir, needs_old or rollout.iterations > 1
        self.stops = stop_token_ids(lm, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.eos_token_id)
        self.step_of: Callable[[], int] = lambda: 0
        self.device = device if device is not None else torch.device("cpu")
        self.stats: dict[str, float] = {}
        self._cache: tuple[int, list[dict[str, Any]]] | None = None
        self.base_model: str | None = None  # what a vllm engine loads (fit_online sets it)
        self.engine: TrainingEngine | None = None

    def bind(self, trainer: Any) -> None:
        """Read the step being taken from the trainer (it is restored on resume)."""
        self.step_of = lambda: int(trainer.step)

    def collate(self, examples: Sequence[PromptExample]) -> dict[str, Any]:
        return {"n": len(examples) * self.cfg.k, "prompts": list(examples)}

    # ----- one generation step ----------------------------------------------------------
    def prepare_step(self, model: nn.Module, batches: list[dict[str, Any]],
                     reduce: Reduce) -> None:
        step = self.step_of()
        gen = step - step % self.cfg.iterations
        if step == gen:
            for b in batches:
                self._sample(model, b, gen)
            self.finish(batches, reduce, gen)
            self._keep(gen, batches)
        else:
            for b, kept in zip(batches, self._kept(gen), strict=True):
                b.clear()
                b.update(kept)
            self.stats = dict(batches[0]["stats"])
        model.train()

    def _sample(self, model: nn.Module, batch: dict[str, Any], gen: int) -> None:
        k, prompts = self.cfg.k, batch["prompts"]
        lm: Any = model.lm  # type: ignore[union-attr]
        if self.engine is None:
            self.engine = rollout_engine(self.cfg.backend, lm, self.tok, self.base_model)
        self.engine.sync_weights(lm)  # vllm: the weights of the last update; hf: nothing
        seeds = [row_seed(self.seed, gen, p.index, j) for p in prompts for j in range(k)]
        r = sample_rollout(self.engine, [p.ids for p in prompts], k=k,
                           max_new_tokens=self.cfg.max_new_tokens,
                           temperature=self.cfg.temperature, stop_ids=self.stops,
                           pad_id=self.pad_id, seeds=seeds, device=next(lm.parameters()).device)
        texts = [self.tok.decode(row[: int(m.sum())].tolist(), skip_special_tokens=True).strip()
                 for row, m in zip(r.completion_ids, r.completion_mask, strict=True)]
        cols: dict[str, list[Any]] = {"completion_ids": [
            row[: int(m.sum())].tolist() for row, m in zip(r.completion_ids, r.completion_mask,
                                                          strict=True)]}
        for name in prompts[0].columns:
            cols[name] = [p.columns.get(name) for p in prompts for _ in range(k)]
        rewards = self.score([p.prompt for p in prompts for _ in range(k)], texts, cols)
        # The rollout and everything computed from it stay on the policy's device.
        dev = r.completion_ids.device
        batch.update(rollout=r, rewards=torch.tensor(rewards, dtype=torch.float32, device=dev))
        if self.needs_old:
            old, values = model(r)
            batch["old_logps"] = old.float()
            batch["old_values"] = None if values is None else values.float()
        if self.ref is not None:
            batch["ref_logps"] = token_logps(self.ref, r, self.cfg.temperature)[0].float()

    def finish(self, batches: list[dict[str, Any]], reduce: Reduce, gen: int) -> None:
        """Advantages (and the step's statistics) once every micro-batch is sampled."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, float,
                                                                      dict[str, float]]:
        raise NotImplementedError

    def rollout_stats(self, batches: list[dict[str, Any]], reduce: Reduce,
                      kl: list[Tensor] | None) -> dict[str, float]:
        """Global means over the step: reward, completion length, KL per completion (k1)."""
        sums = [0.0, 0.0, 0.0, 0.0]
        for i, b in enumerate(batches):
            sums[0] += float(b["rewards"].sum())
            sums[1] += float(b["rollout"].completion_mask.sum())
            sums[2] += float(kl[i].sum()) if kl is not None else 0.0
            sums[3] += float(b["rewards"].numel())
        total = reduce(sums)
        n = max(total[3], 1.0)
        out = {"reward": total[0] / n, "length": total[1] / n}
        if kl is not None:
            out["kl"] = total[2] / n
        return out

    def sequence_kl(self, b: dict[str, Any], estimator: str = "k1") -> Tensor:
        """Σ_t KL estimate per completion ``(B,)`` between the sampling policy and the
        reference."""
        mask = b["rollout"].completion_mask
        old = b.get("old_logps")
        if old is None:
            raise PreflineError("internal: the sequence KL needs the rollout's log-probs")
        return (kl_per_token(old, b["ref_logps"], estimator) * mask).sum(-1)

    # ----- reuse across iterations and resumes ------------------------------------------
    def _rollout_file(self) -> Path:
        return self.run_dir / "rollouts" / f"rank-{rank()}.pt"

    def _keep(self, gen: int, batches: list[dict[str, Any]]) -> None:
        for b in batches:
            b["stats"] = dict(self.stats)
        if self.cfg.iterations == 1:
            return
        self._cache = (gen, [dict(b) for b in batches])
        path = self._rollout_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"gen": gen, "batches": self._cache[1]}, tmp)
        tmp.replace(path)

    def _kept(self, gen: int) -> list[dict[str, Any]]:
        if self._cache is None or self._cache[0] != gen:
            path = self._rollout_file()
            saved = torch.load(path, weights_only=False, map_location=self.device) \
                if path.exists() else None
            if saved is None or saved["gen"] != gen:
                raise PreflineError(f"cannot continue: the rollout of step {gen} that this step "
                                    f"reuses is not in {path.parent} (start afresh without "
                                    "--resume, or resume from a checkpoint at a multiple of "
                                    "iterations)", field="iterations")
            self._cache = (gen, saved["batches"])
        return [dict(b) for b in self._cache[1]]

    def metric_sums(self, count: float) -> dict[str, float]:
        """The step's global means as metric sums (the engine divides by the step's count)."""
        return {k: v * count for k, v in self.stats.items()}


@dataclass
class OnlineRLResult(StageResult):
    """A policy trained online (RLOO, GRPO or PPO): where it is and how the reward moved."""

    artifact_kind = "policy"

    path: Path
    """The exported policy: ``<run>/model``."""
    run_dir: Path
    method: str
    steps: int
    metrics: dict[str, Any]
    """``reward_first``/``reward_last`` (mean reward of the first and last step's rollout),
    ``kl_last``, ``length_last``; PPO also ``beta_last``."""
    inputs: tuple[Ref, ...]
    prompts_hash: str
    """SHA-256 of the prompt set (what was sampled from)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    monitor: list[dict[str, Any]] = field(default_factory=list)
    """The over-optimisation monitor's measurements (also ``<run>/monitor.jsonl``)."""
    stop_reason: str | None = None
    """Why the monitor stopped the run early (KL budget, falling gold); None: it ran out."""
    plot: Path | None = None
    """Gold and proxy against KL (``<run>/overoptimisation.png``), when measured twice."""
    policy: Any = field(default=None, repr=False, compare=False)

    json_omit: ClassVar[tuple[str, ...]] = ("policy", "history")
    """The in-memory model and the per-step history (in train_log.jsonl) stay out of JSON."""


def lineage(source: RewardSource, base_model: str, prompts: str | None,
            prompts_hash: str) -> tuple[Ref, ...]:
    """Typed inputs: base model (also the reference), what scored, the prompts."""
    refs = [Ref("base_model", ref=base_model), Ref("reference_model", ref=base_model)]
    if source.reward_model:
        refs.append(Ref("reward_model", ref=source.reward_model))
    else:
        refs.append(Ref("judge", ref=source.judge or f"reward_fn:{source.reward_fn}"))
    refs.append(Ref("data", ref=f"{prompts or 'bundled:train'}#sha256:{prompts_hash}"))
    return tuple(refs)


def summary_metrics(history: list[dict[str, Any]]) -> dict[str, Any]:
    first, last = (history[0], history[-1]) if history else ({}, {})
    out: dict[str, Any] = {"reward_first": first.get("reward"), "reward_last": last.get("reward")}
    for key in ("kl", "length", "beta"):
        if key in last:
            out[f"{key}_last"] = last[key]
    return out


def fit_online(cfg: RLConfig | PPOConfig, ctx: Context, lm: Any, tokenizer: Any, *,
               base_model: str, method: str,
               make_task: Callable[[nn.Module | None, Path], OnlineTask]) -> OnlineRLResult:
    """Train ``lm`` on ``ctx.device`` (``make_task(reference or None, run folder)`` builds
    the method's Task), watched by the over-optimisation monitor; rank 0 exports to
    ``<run>/model`` and writes ``summary.json``."""
    cfg.reward.check()
    device = ctx.torch_device  # a device this machine lacks is refused before any work
    out = ctx.require_run_dir()
    rows, prompts_hash = read_prompt_file(cfg.rollout.prompts)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples = encode_prompts(rows, tokenizer, cfg.rollout.max_prompt_tokens)
    place(lm, device)
    # The monitor's KL is to the initial policy, so it keeps a reference even when β = 0.
    ref = place(frozen_copy(lm), device) \
        if cfg.beta > 0 or cfg.monitor.monitor_every else None
    module = PolicyModule(lm, cfg.rollout.temperature,
                          cfg.value_model if isinstance(cfg, PPOConfig) else None)
    task = make_task(ref if cfg.beta > 0 else None, out)
    task.base_model = base_model
    monitor = _monitor(cfg, rows, task, tokenizer, ref, out)
    # The prompts' location may change on resume (their hash decides), nothing else.
    settings = config.to_dict(cfg)
    settings["rollout"] = {k: v for k, v in settings["rollout"].items() if k != "prompts"}
    train = cfg.train if monitor is None else \
        dataclasses.replace(cfg.train, eval_every=cfg.monitor.monitor_every)
    trainer = Trainer(module, task, examples, train, run_dir=out, progress=ctx.progress,
                      fingerprint={"config": settings, "data": prompts_hash, "model": base_model},
                      device=device)
    if monitor is not None:
        trainer.evaluate = monitor.evaluate(trainer)
        resumed = ckpt.latest(out) if cfg.train.resume else None
        monitor.start(lm, int(resumed[1]["step"]) if resumed is not None else 0)
    task.bind(trainer)
    fit = trainer.fit()
    if not fit.history:
        raise PreflineError("training took no steps", field="max_steps")
    plot = monitor.finish(lm, fit.steps, out) if monitor is not None else None
    path = export_policy(lm, tokenizer, out, "merged", write=trainer.rank == 0,
                         base_model=base_model)
    mon = monitor.monitor if monitor is not None else None
    result = OnlineRLResult(
        path=path, run_dir=out, method=method, steps=fit.steps,
        metrics=summary_metrics(fit.history),
        inputs=lineage(cfg.reward, base_model, cfg.rollout.prompts, prompts_hash),
        prompts_hash=prompts_hash, history=fit.history,
        monitor=[dataclasses.asdict(r) for r in mon.records] if mon else [],
        stop_reason=mon.stop_reason if mon else None, plot=plot, policy=lm)
    if trainer.rank == 0:
        (out / "summary.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
    return result


def _monitor(cfg: RLConfig | PPOConfig, train_rows: list[dict[str, Any]], task: OnlineTask,
             tokenizer: Any, ref: nn.Module | None, out: Path) -> RLMonitor | None:
    """The monitor on its prompts (see :class:`~prefline.train.rl_config.MonitorConfig`)."""
    m = cfg.monitor
    if not m.monitor_every or ref is None:
        return None
    return make_monitor(m, cfg.rollout, monitor_rows(cfg, train_rows), task.score,
                        cfg.reward.spec(), tokenizer, ref, seed=cfg.train.seed, out=out,
                        resume=cfg.train.resume)


def monitor_rows(cfg: RLConfig | PPOConfig, train_rows: list[dict[str, Any]],
                 ) -> list[dict[str, Any]]:
    """The monitor's fixed prompts: ``monitor_prompts``; else, training on the bundled
    prompts, the bundled **dev** split (the eval split is scored once per released
    configuration, so a run must not watch it); else the training prompts."""
    if cfg.monitor.monitor_prompts is not None:
        return read_prompt_file(cfg.monitor.monitor_prompts)[0]
    return read_prompt_file(None, "dev")[0] if cfg.rollout.prompts is None else train_rows


def load_and_fit(cfg: RLConfig | PPOConfig, ctx: Context,
                 fit: Callable[..., OnlineRLResult]) -> OnlineRLResult:
    """A stage's ``run``: check the reward source (before any model loads), load the policy
    (the embedded SmolLM2 by default), ``fit(cfg, ctx, lm, tokenizer, base_model=...)``."""
    cfg.reward.check()
    _ = ctx.torch_device  # a device this machine lacks is refused before the model loads
    lm, tok = load_causal_lm(cfg.model)
    return fit(cfg, ctx, lm, tok, base_model=cfg.model or f"embedded:{DEFAULT_POLICY}")
