"""A preference set where two segments really disagree (issue 14, item 4).

Candidates of clearly different lengths are labelled twice, by two principle judges with
opposite length rules: ``style=concise`` users prefer the short answer, ``style=detailed``
users the long one. Each candidate pair of a prompt is labelled once for a user of each
segment, so the two segments' labels of a pair are exact opposites: a model that ignores
the segment can do no better than 50% on the two together, and one that conditions on it
can reach 100% on each.

    data = build_disagreement(DisagreeConfig(prompts="bundled:train", n_prompts=40))
    data.train, data.heldout        # PreferencePairs with user and segment={"style": ...}

Candidates come from a ``prefline generate`` output file (``generations``: the embedded
policy's samples, several per prompt) or, without one, from templates that write a short, a
middle and a long answer to each prompt (what the tests use). Held-out prompts never appear
in train (split by prompt with :func:`prefline.base.splits.split_of`). ``prefline
disagree`` writes ``train.jsonl``, ``heldout.jsonl`` (pairwise records with ``user`` and
``segment``, readable by ``prefline import`` and ``--data``) and ``manifest.json``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.base.splits import split_of
from prefline.base.stage import StageResult
from prefline.formats.examples import Messages, PreferencePair
from prefline.formats.jsonl import write_jsonl
from prefline.formats.records import prompt_key
from prefline.generate.io import read_generations, read_prompt_rows
from prefline.judges import Judge, make_judge
from prefline.judges.principles import WORD
from prefline.store.context import Context

SEGMENT_KEY = "style"
STYLE_RULES: dict[str, dict[str, Any]] = {
    # Opposite length rules of the principle judge (`rules`), and nothing else that could
    # separate the candidates: a response is judged on length alone.
    "concise": {"weights": {"non_empty": 1.0, "length_budget": 4.0},
                "min_words": 1, "max_words": 10, "brief_max_words": 10},
    "detailed": {"weights": {"non_empty": 1.0, "length_budget": 4.0},
                 "min_words": 40, "max_words": 400, "brief_max_words": 400},
}
"""``rules`` judge options per segment value: concise answers lose points above 10 words,
detailed ones below 40."""

_OPENERS = ["Short answer: {t}.", "It depends on {t}.", "Use {t}.", "Mostly {t}."]
_SENTENCES = [
    "Start with the simplest option that covers {t}.",
    "Check the basics of {t} first, because most problems come from there.",
    "A common mistake is to skip the details of {t} and guess instead.",
    "If the first attempt fails, write down what happened and try one change at a time.",
    "Experienced people usually test small cases before committing to a plan.",
    "Keep notes, since you will want to compare the results later on.",
    "There are trade-offs between speed and care that depend on your situation.",
    "When in doubt, ask someone who has done {t} before for a second opinion.",
    "Reading a reliable reference on {t} saves time in the long run.",
    "Finally, review the outcome and decide what you would do differently next time.",
    "Most of the effort goes into preparation rather than the final step.",
    "Small, regular steps work better than one large push at the end.",
]


@dataclass(frozen=True)
class DisagreeConfig:
    """How ``prefline disagree`` builds the two-segment preference set."""

    out: Path | None = None
    """Folder for train.jsonl, heldout.jsonl and manifest.json (created); none: build only."""
    prompts: str = "bundled:train"
    """Prompts for the templated candidates: bundled:train|eval or a prompts file."""
    generations: str | None = None
    """A `prefline generate` output file (several responses per prompt, e.g. the embedded
    policy's); used instead of templated candidates."""
    n_prompts: int = 60
    """Prompts used (the first ones of the file)."""
    users_per_segment: int = 6
    """Pseudonymous users per segment value; each label goes to one of them at random."""
    heldout_fraction: float = 0.25
    """Share of prompts held out (none of their pairs is in train)."""
    min_word_gap: int = 8
    """Two candidates form a pair only if their lengths differ by at least this many words."""
    seed: int = 0
    """Seed of the templates, the user draw and the split."""

    def __post_init__(self) -> None:
        checks = [("n_prompts", self.n_prompts >= 2, "at least 2"),
                  ("users_per_segment", self.users_per_segment >= 1, "at least 1"),
                  ("heldout_fraction", 0 < self.heldout_fraction < 1, "in (0, 1)"),
                  ("min_word_gap", self.min_word_gap >= 1, "at least 1")]
        for name, ok, expected in checks:
            if not ok:
                raise PreflineError(f"{name} must be {expected}, got {getattr(self, name)!r}",
                                    field=name)


@dataclass(frozen=True)
class DisagreeResult(StageResult):
    """The labelled pairs, split by prompt, and what produced them."""

    train: list[PreferencePair] = field(repr=False)
    heldout: list[PreferencePair] = field(repr=False)
    counts: dict[str, dict[str, int]]
    """Pairs per split and segment value, e.g. {"train": {"concise": 90, ...}}."""
    judges: dict[str, dict[str, Any]]
    """Each segment value's judge config (what labelled its pairs)."""
    dropped_ties: int
    """Candidate pairs some judge scored as a tie (left out for every segment)."""
    out: Path | None = None
    json_omit: ClassVar[tuple[str, ...]] = ("train", "heldout")


def style_judges() -> dict[str, Judge]:
    """The two opposite ``rules`` judges, by segment value."""
    return {style: make_judge("rules", rules) for style, rules in STYLE_RULES.items()}


def templated_candidates(prompt: Messages, rng: random.Random) -> list[str]:
    """A short (~5 words), a middle (~15) and a long (~35) answer to ``prompt``."""
    words = [w for w in WORD.findall(prompt[-1]["content"].lower()) if len(w) > 3]
    topic = " ".join(words[-2:]) or "this"
    short = rng.choice(_OPENERS).format(t=topic)
    pool = [s.format(t=topic) for s in _SENTENCES]
    rng.shuffle(pool)
    middle = " ".join([short, *pool[:1]])
    long = " ".join([short, *pool[:3]])
    return [short, middle, long]


def _candidates(cfg: DisagreeConfig) -> list[tuple[Messages, list[str]]]:
    rng = random.Random(cfg.seed)
    if cfg.generations is not None:
        rows = [(g.prompt, list(dict.fromkeys(g.responses)))
                for g in read_generations(cfg.generations)]
    else:
        rows = [(r.prompt, templated_candidates(r.prompt, rng))
                for r in read_prompt_rows(cfg.prompts)]
    return rows[:cfg.n_prompts]


def _n_words(text: str) -> int:
    return len(WORD.findall(text.lower()))


def label_pairs(rows: list[tuple[Messages, list[str]]], judges: dict[str, Judge],
                cfg: DisagreeConfig) -> tuple[list[PreferencePair], int]:
    """Every pair of a prompt's candidates whose lengths differ by ``min_word_gap`` words,
    judged for one user of each segment value. A pair some judge calls a tie is dropped for
    every segment (and counted), so the segments' labels stay exact mirrors."""
    rng = random.Random(cfg.seed + 1)
    users = {s: [f"u-{s}-{i:02d}" for i in range(cfg.users_per_segment)] for s in judges}
    out: list[PreferencePair] = []
    ties = 0
    for prompt, cands in rows:
        key = prompt_key(prompt)
        for i, a in enumerate(cands):
            for b in cands[i + 1:]:
                if abs(_n_words(a) - _n_words(b)) < cfg.min_word_gap:
                    continue
                verdicts = {style: judge.judge(prompt, a, b) for style, judge in judges.items()}
                if any(v.choice == "tie" for v in verdicts.values()):
                    ties += 1
                    continue
                for style, verdict in verdicts.items():
                    chosen, rejected = (a, b) if verdict.choice == "a" else (b, a)
                    out.append(PreferencePair(
                        prompt, chosen, rejected, prompt_key=key, user=rng.choice(users[style]),
                        segment={SEGMENT_KEY: style},
                        meta={"judge": style, "rationale": verdict.rationale}))
    return out, ties


def build_disagreement(cfg: DisagreeConfig) -> DisagreeResult:
    """Candidates → two opposite judges → pairs with user and segment, split by prompt."""
    judges = style_judges()
    pairs, ties = label_pairs(_candidates(cfg), judges, cfg)
    if not pairs:
        raise PreflineError("no candidate pair differs enough in length to be labelled; give "
                            "more candidates per prompt or lower min_word_gap",
                            field="min_word_gap")
    split = {p.prompt_key: split_of(p.prompt_key, cfg.heldout_fraction, cfg.seed) for p in pairs}
    train = [p for p in pairs if split[p.prompt_key] == "train"]
    heldout = [p for p in pairs if split[p.prompt_key] == "test"]
    if not train or not heldout:
        raise PreflineError(f"{len(set(split))} prompts give an empty train or held-out split; "
                            "use more prompts", field="n_prompts")
    counts = {name: dict(Counter(p.segment[SEGMENT_KEY] for p in part))
              for name, part in (("train", train), ("heldout", heldout))}
    return DisagreeResult(train, heldout, counts,
                          {s: j.config() for s, j in judges.items()}, ties, cfg.out)


def pair_row(p: PreferencePair) -> dict[str, Any]:
    """A pairwise record (``prefline import`` / ``--data``) carrying user and segment."""
    return {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected,
            "user": p.user, "segment": dict(p.segment),
            "rationale": p.meta.get("rationale"), "judge": p.meta.get("judge")}


def run(cfg: DisagreeConfig, ctx: Context) -> DisagreeResult:
    """Build the set and, with ``out``, write it (train.jsonl, heldout.jsonl, manifest.json)."""
    result = build_disagreement(cfg)
    if cfg.out is not None:
        cfg.out.mkdir(parents=True, exist_ok=True)
        for name, part in (("train", result.train), ("heldout", result.heldout)):
            write_jsonl(cfg.out / f"{name}.jsonl", [pair_row(p) for p in part])
        manifest = {"counts": result.counts, "judges": result.judges,
                    "dropped_ties": result.dropped_ties, "segment_key": SEGMENT_KEY,
                    "config": {k: str(v) if isinstance(v, Path) else v
                               for k, v in cfg.__dict__.items()},
                    "content_hash": content_hash([pair_row(p) for p in
                                                  result.train + result.heldout])}
        (cfg.out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return result
