"""Policy-training data: where it comes from, what each kind of feedback becomes, the splits.

Sources: a snapshot (its ``train`` split trains; its ``test`` split is the held-out set) or a
file (any format ``prefline import`` reads). A file has no test split of its own, so one is
cut with the rule a snapshot uses when it is made (``test_fraction`` of the prompts, seeded
by ``train.seed``), by the function reward training uses,
:func:`prefline.train.reward_data.file_splits`. The validation split ``val`` (held-out
training metrics, early stopping) is carved from train with
:func:`prefline.base.splits.carve`, the same way reward training carves it.

What each kind of feedback becomes:

================  =========================================  ===============================
kind              DPO family (pairs)                         KTO (single labelled responses)
================  =========================================  ===============================
pairwise          the pair                                   chosen desirable, rejected not
pairwise tie      ignored: no preference                     ignored: no preference
ranking           its implied pairs (``ranking_pairs``)      its implied pairs, then split
binary (thumbs)   ignored: no second response                the labelled response
implicit          ignored: no second response                the labelled response, weighted
rating            ignored: train a reward model on it        ignored: no desirability label
================  =========================================  ===============================

A pair split for KTO is the paper's recipe (and TRL's ``unpair_preference_dataset``): a
response that wins one pair and loses another is desirable in one example and undesirable
in the other. The stage counts the records it used and ignored per kind, with the reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash, file_sha256
from prefline.base.splits import carve, prompt_key_of
from prefline.base.stage import Ref
from prefline.formats.examples import PreferencePair, UnpairedExample
from prefline.formats.load import load_examples, ranking_pairs
from prefline.store.snapshots import get_snapshot, snapshot_examples
from prefline.train.reward_data import file_splits, kind_of

IGNORED_WHY = {
    ("dpo", "pairwise tie"): "a tie prefers neither response, so there is nothing to push apart",
    ("kto", "pairwise tie"): "a tie says neither response is better; neither is labelled",
    ("dpo", "binary"): "DPO needs two responses to compare; thumbs train KTO (loss=kto)",
    ("dpo", "implicit"): "a label mapped from an implicit signal is a thumbs label; thumbs "
                         "train KTO (loss=kto)",
    ("dpo", "rating"): "DPO needs pairs; ratings train a reward model (prefline train reward)",
    ("kto", "rating"): "KTO needs a desirable/undesirable label; ratings train a reward model "
                       "(prefline train reward)",
}
"""Why a kind of record is left out, per trainer family (printed and recorded)."""


@dataclass
class FeedbackUse:
    """Records of the training split (train + val) used and ignored, per kind, and why."""

    used: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, dict[str, Any]] = field(default_factory=dict)
    """kind → ``{"count": n, "why": reason}``."""

    def lines(self) -> list[str]:
        """One line per kind, for the command's output."""
        out = [f"used {n} {kind} record(s)" for kind, n in self.used.items()]
        out += [f"ignored {v['count']} {kind} record(s): {v['why']}"
                for kind, v in self.ignored.items()]
        return out


def policy_kind(example: object) -> str:
    """A record's kind as the counts name it: reward training's names
    (:func:`prefline.train.reward_data.kind_of`; ``implicit`` = a thumbs label mapped from an
    implicit signal at snapshot time), with ties apart, since they train no policy."""
    kind = kind_of(example)
    return "pairwise tie" if kind == "pairwise" and getattr(example, "tie", False) else kind


def split_pair(pair: PreferencePair) -> list[UnpairedExample]:
    """A decisive pair as two KTO examples: chosen desirable, rejected undesirable."""
    meta = {**(pair.meta or {}), "source": "pair"}
    return [UnpairedExample(pair.prompt, response, label, tags=pair.tags,
                            prompt_key=pair.prompt_key, meta=meta)
            for response, label in ((pair.chosen, True), (pair.rejected, False))]


def select(examples: Sequence[Any], kto: bool) -> tuple[list[Any], FeedbackUse]:
    """The trainer's examples (PreferencePairs, or UnpairedExamples for KTO) and the counts."""
    family = "kto" if kto else "dpo"
    used: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    out: list[Any] = []
    for ex in examples:
        kind = policy_kind(ex)
        if kind == "pairwise":
            out.extend(split_pair(ex) if kto else [ex])
            used["pairwise→split" if kto else "pairwise"] += 1
        elif kind == "ranking":
            pairs = ranking_pairs(ex)
            out.extend([u for p in pairs for u in split_pair(p)] if kto else pairs)
            used["ranking→pairs→split" if kto else "ranking→pairs"] += 1
        elif kto and kind in ("binary", "implicit"):
            out.append(ex)
            used[kind] += 1
        else:
            ignored[kind] += 1
    why = {k: IGNORED_WHY.get((family, k), f"{family} has no loss for {k} records")
           for k in ignored}
    return out, FeedbackUse(dict(used), {k: {"count": n, "why": why[k]}
                                         for k, n in ignored.items()})


@dataclass
class PolicyData:
    """The stage's examples by split, what was used and ignored, and where they came from."""

    train: list[Any]
    val: list[Any]
    heldout: list[Any]
    use: FeedbackUse
    source: Ref
    """``Ref("snapshot", snapshot_id=..)`` or ``Ref("data", ref=<file sha256>)``."""
    source_hash: str
    """The snapshot's content hash, or the file's SHA-256."""


def picked_data(train: list[Any], use: FeedbackUse, identity: Any, *, val: list[Any] | None = None,
                heldout: list[Any] | None = None, source: Ref | None = None) -> PolicyData:
    """Examples picked in memory (one segment's share of a snapshot, one online round's
    sampled pairs) as a stage's data. Its ``source_hash`` is ``content_hash(identity)``: what
    was picked, so that the same pick hashes alike and two picks never do. ``source`` is where
    the examples came from; without one, the pick is its own source (``Ref("data")``)."""
    digest = content_hash(identity)
    return PolicyData(train, val or [], heldout or [], use,
                      source or Ref("data", ref=digest), digest)


def _read(snapshot: str | None, data: str | None, db: str, test_fraction: float,
          seed: int) -> tuple[list[Any], list[Any], Ref, str]:
    if snapshot is not None:
        snap = get_snapshot(snapshot, db)
        return (list(snapshot_examples(snap.id, "train", db)),
                list(snapshot_examples(snap.id, "test", db)),
                Ref("snapshot", snapshot_id=int(snap.id)), str(snap.content_hash))
    if data is None:
        raise PreflineError("give a snapshot (--snapshot ID) or a file (--data FILE) to train "
                            "on", field="snapshot")
    train, test = file_splits(load_examples(data), test_fraction, seed)
    digest = file_sha256(Path(data))
    return train, test, Ref("data", ref=digest), digest


def best_vs_worst(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    """One pair per prompt: among its decisive pairs, the one whose chosen response won the
    most comparisons and whose rejected one won the fewest (a tie counts half a win).

    Training on every pair of K candidates repeats each prompt K(K-1)/2 times and mostly
    teaches small differences; the clearest pair per prompt gives the strongest signal per
    step, which matters on a CPU budget.
    """
    wins: defaultdict[tuple[str, str], float] = defaultdict(float)
    by_prompt: dict[str, list[PreferencePair]] = {}
    for p in pairs:
        key = prompt_key_of(p)
        by_prompt.setdefault(key, []).append(p)
        wins[(key, p.chosen)] += 0.5 if p.tie else 1.0
        wins[(key, p.rejected)] += 0.5 if p.tie else 0.0
    out = []
    for key, group in by_prompt.items():
        strict = [p for p in group if not p.tie]
        if strict:
            out.append(max(strict, key=lambda p: wins[(key, p.chosen)] - wins[(key, p.rejected)]))
    return out


def load_policy_data(*, snapshot: str | None, data: str | None, db: str, kto: bool,
                     val_fraction: float, test_fraction: float, seed: int,
                     pairs: str = "all") -> PolicyData:
    """Read the source, keep what the trainer can use and split it (module docstring);
    ``pairs="best_vs_worst"`` keeps one pair per training prompt (:func:`best_vs_worst`)."""
    pool, test, source, digest = _read(snapshot, data, db, test_fraction, seed)
    examples, use = select(pool, kto)
    if pairs == "best_vs_worst":
        examples = best_vs_worst(examples)
    if not examples:
        held = "; ".join(f"{v['count']} {k}, ignored because {v['why']}"
                         for k, v in use.ignored.items()) or "nothing"
        need = "thumbs, pairs or rankings" if kto else "pairs or rankings"
        raise PreflineError(f"{'snapshot ' + snapshot if snapshot else data} holds no {need} "
                            f"to train on in its train split (it holds {held})",
                            field="snapshot" if snapshot is not None else "data")
    train, val = carve(examples, val_fraction, seed)
    if not train:
        raise PreflineError("every training prompt fell into the val split; lower "
                            "val_fraction", field="val_fraction")
    return PolicyData(train, val, select(test, kto)[0], use, source, digest)
