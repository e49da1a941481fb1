"""The disagreement set (issue 14 item 4): two opposite rules judges label the same
candidate pairs, so the two segments' labels are exact mirrors, split by prompt."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from tests.cli_runner import run_cli

from prefline.base.errors import PreflineError
from prefline.formats.load import load_examples
from prefline.personal.disagree import DisagreeConfig, build_disagreement, style_judges


def _words(text: str) -> int:
    return len(text.split())


def test_segments_disagree_exactly_and_prompts_do_not_leak() -> None:
    data = build_disagreement(DisagreeConfig(n_prompts=30, users_per_segment=3))
    for part in (data.train, data.heldout):
        by_pair: dict[tuple[str, frozenset[str]], dict[str, str]] = {}
        for p in part:
            by_pair.setdefault((p.prompt_key, frozenset((p.chosen, p.rejected))),
                               {})[p.segment["style"]] = p.chosen
            # concise users chose the shorter answer, detailed users the longer one
            shorter = _words(p.chosen) < _words(p.rejected)
            assert shorter == (p.segment["style"] == "concise")
            assert p.user is not None and p.user.startswith(f"u-{p.segment['style']}-")
        assert all(len(v) == 2 and v["concise"] != v["detailed"] for v in by_pair.values())
    assert not {p.prompt_key for p in data.train} & {p.prompt_key for p in data.heldout}
    assert data.counts["train"]["concise"] == data.counts["train"]["detailed"] > 20
    assert data.judges["concise"]["judge"] == "principles"
    assert len({p.user for p in data.train}) == 6


def test_judges_are_the_rules_judge_with_opposite_length_rules() -> None:
    judges = style_judges()
    short, long = "Use a loop.", " ".join(["Check each item in turn and keep notes."] * 8)
    assert judges["concise"].judge("How do I sum numbers?", short, long).choice == "a"
    assert judges["detailed"].judge("How do I sum numbers?", short, long).choice == "b"


def test_cli_writes_importable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dis"
    code, stdout, err = run_cli(["disagree", "--out", str(out), "--n-prompts", "12",
                                 "--db", f"sqlite:///{tmp_path / 's.db'}"], capsys)
    assert code == 0, err
    assert "style=concise" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    train = load_examples(out / "train.jsonl")
    assert Counter(ex.segment["style"] for ex in train) == manifest["counts"]["train"]
    assert all(ex.user for ex in train)


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(PreflineError) as err:
        DisagreeConfig(heldout_fraction=1.5)
    assert err.value.field == "heldout_fraction"


def test_generated_candidates_are_used_and_near_lengths_skipped(tmp_path: Path) -> None:
    """A `prefline generate` file (e.g. the embedded policy's samples) instead of templates;
    candidates closer than min_word_gap words form no pair."""
    gens = tmp_path / "gen.jsonl"
    rows = [{"prompt": [{"role": "user", "content": f"Tell me about topic {i}."}],
             "responses": ["Fine.", "Fine, really.", " ".join(["It is a long story."] * 12)]}
            for i in range(12)]
    gens.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = build_disagreement(DisagreeConfig(generations=str(gens), n_prompts=12,
                                             heldout_fraction=0.3))
    pairs = data.train + data.heldout
    assert len(pairs) == 12 * 2 * 2  # two long-vs-short pairs per prompt, once per segment
    assert all("long story" in (p.chosen if p.segment["style"] == "detailed" else p.rejected)
               for p in pairs)
