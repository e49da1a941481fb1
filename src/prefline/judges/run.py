"""The judge (label) stage: an AI judge labels pairs of generated responses.

    result = run(JudgeConfig(judge="rules", in_file=Path("cands.jsonl"),
                             out=Path("pairs.jsonl")), ctx)

It reads the output of the generate stage, judges pairs of each prompt's responses (see
:mod:`prefline.judges.label` for the pair strategies), writes import-ready pairwise JSONL and
stores every usable verdict as ``ai_judge`` feedback (idempotent per judge config).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prefline.base import interrupts
from prefline.base.errors import PreflineError
from prefline.base.progress import notice
from prefline.base.stage import StageResult
from prefline.formats.jsonl import read_jsonl
from prefline.formats.records import prompt_key
from prefline.generate.backend import parse_backend
from prefline.generate.io import read_generations, write_jsonl
from prefline.generate.store import Generation
from prefline.judges import Judge, make_judge, parse_spec
from prefline.judges.label import candidate_pairs, label_generations, pair_record
from prefline.judges.store import JudgedPair, store_verdicts
from prefline.store.context import Context


@dataclass(frozen=True)
class JudgeConfig:
    """Which judge labels which candidates, and what is written and stored."""

    judge: str
    """rules | rules:CONFIG.json | openai:URL[#model] | reward:DIR | lm:PATH."""
    in_file: Path
    """Output of `prefline generate` (prompt + responses per line)."""
    out: Path
    """Pairwise JSONL: prompt/chosen/rejected/tie/strength + rationale (the folder must exist)."""
    pairs: Literal["all", "best-worst"] = "all"
    """all: every pair of distinct responses is a row; best-worst: one row per prompt (all
    pairs are still judged and stored)."""
    ties: Literal["keep", "drop"] = "keep"
    """keep: tie rows (tie=true) in --out; drop: leave them out of --out (always stored)."""
    backend: str = "hf"
    """Generation engine of an lm: judge: hf (in-process), vllm, openai:URL or
    openai:URL#model (the model answers "A or B?" there; see docs/generation.md)."""
    judge_options: dict[str, Any] = field(default_factory=dict)
    """Extra judge settings, a JSON object or TOML table (e.g. api_key_env, template,
    timeout for openai:; tie_band for reward: and lm:)."""
    store: bool = True
    """Also store the verdicts as ai_judge feedback (--no-store: only write the file)."""
    resume: bool = False
    """Keep the rows already in --out (an interrupted run's, same judge) and judge only the
    prompts that have none there."""

    def __post_init__(self) -> None:
        kind, _ = parse_spec(self.judge)
        if parse_backend(self.backend)[0] != "hf" and kind != "lm":
            raise PreflineError(f"--backend {self.backend} runs a local LM judge (lm:PATH); "
                                f"judge {self.judge!r} has no generation backend",
                                field="backend")


@dataclass(frozen=True)
class JudgeResult(StageResult):
    """How many pairs were judged, how they came out, and what was written and stored."""

    judge: str
    """The judge as the user named it (its spec, e.g. ``rules``)."""
    judge_name: str
    """The judge's own name (``principles`` for ``rules``): the ``judge`` field of the rows
    and part of the store's annotator name."""
    judge_config: dict[str, Any]
    """Everything that determines the judge's output (stored with every verdict)."""
    pairs_judged: int
    rows_written: int
    choices: dict[str, int]
    """Valid verdicts per choice (a, b, tie)."""
    invalid: int
    """Pairs the judge gave no usable answer for (not written, not stored)."""
    out: Path
    stored: dict[str, int] | None = None
    """``{"stored", "existing", "invalid"}``; None when not stored."""
    resumed: int = 0
    """Prompts whose rows were already in ``out`` (``resume``) and were kept, not judged."""


CHUNK_PAIRS = 64
"""Pairs judged per call at least (whole prompts): large enough for a judge's own batching
and concurrency, small enough that an interrupt loses little."""


def run(cfg: JudgeConfig, ctx: Context) -> JudgeResult:
    """Judge the candidates in ``cfg.in_file``; write ``cfg.out``; store the verdicts.

    The input file and the output folder are checked before the judge is built. Prompts are
    judged in chunks; interrupted (Ctrl-C, SIGTERM) or stopped by an error, the rows of the
    prompts finished so far go to ``cfg.out`` and their verdicts to the store, and
    ``resume`` continues from there.
    """
    gens = read_generations(cfg.in_file)
    if not cfg.out.parent.exists():
        raise PreflineError(f"output folder {cfg.out.parent} does not exist", path=str(cfg.out),
                            field="out")
    options = {**cfg.judge_options, "backend": cfg.backend} if cfg.backend != "hf" else (
        cfg.judge_options)
    judge = make_judge(cfg.judge, options)
    rows = _kept(cfg, gens, judge.name) if cfg.resume else {}
    resumed = len(rows)
    counts = [len(candidate_pairs(g.responses)) for g in gens]
    todo = [i for i in range(len(gens)) if i not in rows]
    judged: list[JudgedPair] = []
    try:
        with ctx.progress.bar(sum(counts), f"judging ({cfg.judge})",
                              start=sum(counts) - sum(counts[i] for i in todo)) as bar:
            for chunk in _chunks(todo, counts):
                part, selected = label_generations(judge, [gens[i] for i in chunk], cfg.pairs,
                                                   on_done=bar.advance)
                judged += part
                rows.update({i: [] for i in chunk})
                for g, p in selected:
                    if p.verdict.valid and (cfg.ties == "keep" or p.verdict.choice != "tie"):
                        rows[chunk[g]].append(pair_record(judge, p))
    except BaseException as exc:
        _keep_finished(cfg, ctx, judge, rows, judged, exc, len(gens))
        raise
    written = _write(cfg.out, rows)
    choices = {c: sum(p.verdict.valid and p.verdict.choice == c for p in judged)
               for c in ("a", "b", "tie")}
    stored = store_verdicts(ctx.db, judge, judged, actor="judge") if cfg.store else None
    return JudgeResult(judge=cfg.judge, judge_name=judge.name, judge_config=judge.config(),
                       pairs_judged=len(judged), rows_written=written, choices=choices,
                       invalid=sum(not p.verdict.valid for p in judged), out=cfg.out,
                       stored=stored, resumed=resumed)


def _chunks(todo: list[int], counts: list[int]) -> Iterator[list[int]]:
    """Consecutive prompts of ``todo`` with at least :data:`CHUNK_PAIRS` pairs per chunk."""
    chunk: list[int] = []
    pairs = 0
    for i in todo:
        chunk.append(i)
        pairs += counts[i]
        if pairs >= CHUNK_PAIRS:
            yield chunk
            chunk, pairs = [], 0
    if chunk:
        yield chunk


def _write(out: Path, rows: dict[int, list[dict[str, Any]]]) -> int:
    """The rows of the finished prompts, in input order (atomically); how many."""
    return write_jsonl(out, (r for i in sorted(rows) for r in rows[i]))


def _keep_finished(cfg: JudgeConfig, ctx: Context, judge: Judge,
                   rows: dict[int, list[dict[str, Any]]], judged: list[JudgedPair],
                   exc: BaseException, n_prompts: int) -> None:
    """Write and store what finished, and say so (in the interrupt line, or on stderr)."""
    if not rows:
        what = "before any prompt was judged; nothing written"
    else:
        written = _write(cfg.out, rows)
        if cfg.store and judged:
            store_verdicts(ctx.db, judge, judged, actor="judge")
        where = ", their verdicts stored" if cfg.store and judged else ""
        what = f"kept {len(rows)} of {n_prompts} prompts: {written} rows in {cfg.out}{where}"
    if isinstance(exc, interrupts.INTERRUPTS):
        interrupts.keep(interrupts.Kept(what, resume_flag="--resume" if rows else None))
    elif rows:
        notice(f"judge stopped by an error: {what}; rerun with --resume to judge the rest")


def _kept(cfg: JudgeConfig, gens: list[Generation], name: str) -> dict[int, list[dict[str, Any]]]:
    """Prompt index -> its rows already in ``cfg.out`` (resume). A prompt without rows there
    (all ties dropped, say) is judged again; the store keeps each verdict once."""
    if not cfg.out.exists():
        return {}
    have: dict[str, list[dict[str, Any]]] = {}
    for no, rec in read_jsonl(cfg.out):
        if not isinstance(rec, dict) or "prompt" not in rec:
            raise PreflineError("expected a pair row with a 'prompt'", path=str(cfg.out),
                                line=no, field="resume")
        if rec.get("judge") != name:
            raise PreflineError(f"cannot resume: this row was judged by {rec.get('judge')!r}, "
                                f"not {name!r}; use the same judge or another --out",
                                path=str(cfg.out), line=no, field="resume")
        have.setdefault(prompt_key(rec["prompt"]), []).append(rec)
    keys = [prompt_key(g.prompt) for g in gens]
    return {i: have[k] for i, k in enumerate(keys) if k in have}
