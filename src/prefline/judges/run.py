"""The judge (label) stage: an AI judge labels pairs of generated responses.

    result = run(JudgeConfig(judge="rules", in_file=Path("cands.jsonl"),
                             out=Path("pairs.jsonl")), ctx)

It reads the output of the generate stage, judges pairs of each prompt's responses (see
:mod:`prefline.judges.label` for the pair strategies), writes import-ready pairwise JSONL and
stores every usable verdict as ``ai_judge`` feedback (idempotent per judge config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prefline.base.errors import PreflineError
from prefline.base.stage import StageResult
from prefline.generate.io import read_generations, write_jsonl
from prefline.generate.run import advance
from prefline.judges import make_judge, parse_spec
from prefline.judges.label import candidate_pairs, label_generations, pair_record
from prefline.judges.store import store_verdicts
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
    judge_options: dict[str, Any] = field(default_factory=dict)
    """Extra judge settings, a JSON object or TOML table (e.g. api_key_env, template,
    timeout for openai:; tie_band for reward: and lm:)."""
    store: bool = True
    """Also store the verdicts as ai_judge feedback (--no-store: only write the file)."""

    def __post_init__(self) -> None:
        parse_spec(self.judge)


@dataclass(frozen=True)
class JudgeResult(StageResult):
    """How many pairs were judged, how they came out, and what was written and stored."""

    judge: str
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


def run(cfg: JudgeConfig, ctx: Context) -> JudgeResult:
    """Judge the candidates in ``cfg.in_file``; write ``cfg.out``; store the verdicts.

    The input file and the output folder are checked before the judge is built.
    """
    gens = read_generations(cfg.in_file)
    if not cfg.out.parent.exists():
        raise PreflineError(f"output folder {cfg.out.parent} does not exist", path=str(cfg.out),
                            field="out")
    judge = make_judge(cfg.judge, cfg.judge_options)
    total = sum(len(candidate_pairs(g.responses)) for g in gens)
    with ctx.progress.bar(total, f"judging ({judge.name})") as bar:
        judged, rows = label_generations(judge, gens, cfg.pairs, on_done=advance(bar))
    keep = [p for _, p in rows
            if p.verdict.valid and (cfg.ties == "keep" or p.verdict.choice != "tie")]
    write_jsonl(cfg.out, (pair_record(judge, p) for p in keep))
    choices = {c: sum(p.verdict.valid and p.verdict.choice == c for p in judged)
               for c in ("a", "b", "tie")}
    stored = store_verdicts(ctx.db, judge, judged, actor="judge") if cfg.store else None
    return JudgeResult(judge=judge.name, judge_config=judge.config(), pairs_judged=len(judged),
                       rows_written=len(keep), choices=choices,
                       invalid=sum(not p.verdict.valid for p in judged), out=cfg.out,
                       stored=stored)
