"""Recall and precision of the redactor on a labelled set (``tests/data/pii/cases.jsonl``).

    python -m prefline.pii.evaluate tests/data/pii/cases.jsonl \\
        --pii-patterns '{"ACCOUNT_ID": "ACC-[0-9]{8}"}' [--json]

Each line: ``{"text", "entities": [{"type", "start", "end"}]}`` with character spans.

Matching rule: a labelled entity and a detected one *match* when they have the same type and
their spans overlap by at least half of the longer of the two (so a phone number found
without its "+" or a card number found without its last group still counts, while a match
on a fragment of a longer value does not). Each labelled entity matches at most one
detection. Per type: recall = matched labels / labels, precision = matched detections /
detections of that type. Detections of an entity type that the set does not label (e.g.
URLs) are counted apart, not as false positives. ``redacted`` is the type-blind recall:
labels covered by any detection under the same overlap rule, i.e. what redaction would hide
even when the type is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.pii.config import RedactionConfig
from prefline.pii.redactor import Found, Redactor


@dataclass(frozen=True)
class Label:
    entity: str
    start: int
    end: int


def overlaps(a: Label | Found, b: Label | Found) -> bool:
    """At least half of the longer span is shared."""
    shared = min(a.end, b.end) - max(a.start, b.start)
    return shared > 0 and 2 * shared >= max(a.end - a.start, b.end - b.start)


@dataclass
class Scores:
    """Counts per entity type and what follows from them."""

    labels: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)
    matched: Counter[str] = field(default_factory=Counter)
    redacted: int = 0
    unlabelled: Counter[str] = field(default_factory=Counter)
    texts: int = 0
    misses: list[dict[str, Any]] = field(default_factory=list)

    def add(self, labels: list[Label], found: list[Found], case: int) -> None:
        self.texts += 1
        known = {lab.entity for lab in labels} | set(self.labels)
        self.labels.update(lab.entity for lab in labels)
        free = list(found)
        for lab in labels:
            hit = next((f for f in free if f.entity == lab.entity and overlaps(lab, f)), None)
            if hit is not None:
                free.remove(hit)
                self.matched[lab.entity] += 1
            else:
                self.misses.append({"id": case, "type": lab.entity, "found": [
                    f.entity for f in found if overlaps(lab, f)]})
            self.redacted += any(overlaps(lab, f) for f in found)
        for f in found:
            if f.entity in known or f.entity in LABELLED:
                self.found[f.entity] += 1
            else:
                self.unlabelled[f.entity] += 1
        self.misses += [{"id": case, "type": f.entity, "false_positive": True} for f in free
                        if f.entity in LABELLED and not any(overlaps(f, lab) for lab in labels
                                                            if lab.entity == f.entity)]

    def table(self) -> dict[str, dict[str, Any]]:
        rows = {}
        for entity in sorted(set(self.labels) | set(self.found)):
            n, k, tp = self.labels[entity], self.found[entity], self.matched[entity]
            rows[entity] = {"labels": n, "found": k, "matched": tp,
                            "recall": round(tp / n, 4) if n else None,
                            "precision": round(tp / k, 4) if k else None}
        return rows

    def to_json(self) -> dict[str, Any]:
        n, k, tp = sum(self.labels.values()), sum(self.found.values()), sum(self.matched.values())
        return {"texts": self.texts, "labels": n, "recall": round(tp / n, 4) if n else None,
                "precision": round(tp / k, 4) if k else None,
                "redacted": round(self.redacted / n, 4) if n else None,
                "per_type": self.table(), "unlabelled_types": dict(self.unlabelled),
                "misses": self.misses}


LABELLED = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN",
            "SECRET")
"""Types a detection of which counts against precision even where a set labels none."""


def read_cases(path: Path) -> list[tuple[int, str, list[Label]]]:
    """``(id, text, labels)`` per line; a bad line fails naming it."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
            labels = [Label(e["type"], int(e["start"]), int(e["end"])) for e in row["entities"]]
            out.append((int(row.get("id", n)), str(row["text"]), labels))
        except (ValueError, KeyError, TypeError) as exc:
            raise PreflineError(f"expected {{text, entities: [{{type, start, end}}]}}: {exc}",
                                path=str(path), line=n) from None
    return out


def evaluate(redactor: Redactor, path: Path) -> Scores:
    """Score ``redactor``'s detections (overlaps resolved, as redaction sees them)."""
    scores = Scores()
    for case, text, labels in read_cases(path):
        scores.add(labels, redactor.find(text), case)
    return scores


def render(result: dict[str, Any]) -> str:
    lines = [f"{'type':<14} {'labels':>6} {'found':>6} {'recall':>7} {'precision':>9}"]
    for entity, row in result["per_type"].items():
        rec = "-" if row["recall"] is None else f"{row['recall']:.3f}"
        prec = "-" if row["precision"] is None else f"{row['precision']:.3f}"
        lines.append(f"{entity:<14} {row['labels']:>6} {row['found']:>6} {rec:>7} {prec:>9}")
    lines.append(f"{'all':<14} {result['labels']:>6} {'':>6} {result['recall']:>7.3f} "
                 f"{result['precision']:>9.3f}   (type-blind recall {result['redacted']:.3f}, "
                 f"{result['texts']} texts)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prefline.pii.evaluate",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--pii-patterns", default="{}", help="NAME -> regex, as JSON")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    args = parser.parse_args(argv)
    from prefline.pii.presidio import build_redactor  # Presidio: seconds to import

    cfg = config.build(RedactionConfig, {"pii_patterns": args.pii_patterns})
    result = evaluate(build_redactor(cfg), args.path).to_json()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
