"""Issue 16: rows as public datasets ship them import as they are, by their fields or with
an explicit ``--format``; afterwards snapshot, audit and export still work (SQLite and
PostgreSQL). Each row is written from the dataset's published schema (field names, types
and nesting as on the Hugging Face dataset card), shortened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli_runner import run_cli

# openbmb/UltraFeedback: one instruction, four completions rated by GPT-4.
ULTRAFEEDBACK = {
    "source": "evol_instruct",
    "instruction": "Can you write a C++ program that prompts the user to enter the name of a country?",
    "models": ["alpaca-7b", "pythia-12b", "starchat", "vicuna-33b"],
    "completions": [
        {"annotations": {"helpfulness": {"Rating": "2", "Rationale": "...", "Type": ["1", "2"]}},
         "critique": "The response is partially correct.", "custom_system_prompt": "",
         "fine-grained_score": 2.25, "model": "alpaca-7b", "overall_score": 4.0,
         "principle": "helpfulness", "response": "#include <iostream>\nint main() { ... }"},
        {"annotations": {}, "critique": "Off topic.", "custom_system_prompt": "",
         "fine-grained_score": 1.0, "model": "pythia-12b", "overall_score": 2.0,
         "principle": "honesty", "response": "Sure, here is a program in Python."},
        {"annotations": {}, "critique": "Correct and clear.", "custom_system_prompt": "",
         "fine-grained_score": 4.5, "model": "starchat", "overall_score": 8.5,
         "principle": "helpfulness", "response": "Here's a C++ program: ... std::getline(std::cin, country);"},
        {"annotations": {}, "critique": "Correct.", "custom_system_prompt": "",
         "fine-grained_score": 4.0, "model": "vicuna-33b", "overall_score": 8.5,
         "principle": "truthfulness", "response": "You can use std::cin to read the name ..."},
    ],
    "correct_answers": ["None"], "incorrect_answers": ["None"],
}

# nvidia/HelpSteer2: one response, five Likert attributes 0-4 (explicit --format likert).
HELPSTEER2 = {"prompt": "c#", "response": "C# is a high-level, object-oriented programming language "
              "developed by Microsoft ...", "helpfulness": 3, "correctness": 4, "coherence": 4,
              "complexity": 2, "verbosity": 1}

# berkeley-nest/Nectar: an HH-style prompt and seven answers ranked by GPT-4 (rank 1 = best).
NECTAR = {
    "prompt": "\n\nHuman: 0.002 = 1000 \n1 = x?\n\nAssistant:",
    "answers": [{"answer": "To find the value of x, we can set up a proportion ... x = 500,000.",
                 "model": "gpt-3.5-turbo", "rank": 3.0},
                {"answer": "If 0.002 equals 1000, then 1 would equal 500,000.",
                 "model": "gpt-4", "rank": 1.0},
                {"answer": "I apologize, but the equation you provided is not correct.",
                 "model": "llama-2-7b-chat", "rank": 2.0}],
    "turns": 1, "num_responses": 3, "source": ["sharegpt"], "good_natured": True,
}

# Thumbs rows as the issue reported them (chat UIs export a response with a thumbs label):
# bool, 0/1 and "up"/"down", under "label" or "thumbs".
THUMBS = [{"prompt": "Summarise: the cat sat.", "response": "A cat sat.", "label": True},
          {"prompt": "Summarise: the cat sat.", "response": "Dogs bark.", "label": 0},
          {"prompt": "Translate 'hi' to French", "response": "Salut", "thumbs": "up"},
          {"prompt": "Translate 'hi' to French", "response": "Hola", "thumbs": "down"}]
LIKERT = [{"prompt": "Is water wet?", "response": "Yes, in everyday terms.", "rating": 4},
          {"prompt": "Is water wet?", "response": "No.", "score": 2}]
RANKING = [{"prompt": "Name a prime", "responses": ["4", "7", "9"], "ranking": [1, 2, 0]},
           {"prompt": "Name a colour", "ranking": ["blue", "bleu", "bloo"]}]

CASES: dict[str, tuple[list[dict[str, Any]], dict[str, int]]] = {
    "ultrafeedback": ([ULTRAFEEDBACK], {"rating": 4}),
    "thumbs": (THUMBS, {"binary": 4}),
    "likert": (LIKERT + [HELPSTEER2], {"rating": 3}),
    "ranking": (RANKING + [NECTAR], {"ranking": 3}),
}


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _store_still_works(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Snapshot, audit and an export all succeed; the audit's JSON. (The HTML report after a
    messy import: tests/formats/test_shapes_hygiene.py.)"""
    code, out, err = run_cli(["snapshot", "create", "--db", db, "--json"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["audit", "--db", db, "--json"], capsys)
    assert code == 0, err
    audit = json.loads(out)
    code, _, err = run_cli(["export", str(tmp_path / "rank.jsonl"), "--task", "ranking",
                            "--db", db], capsys)
    assert code in (0, 2) and "Traceback" not in err  # 2: no rankings in this store, said so
    return audit


@pytest.mark.parametrize("shape", sorted(CASES))
@pytest.mark.parametrize("explicit", [False, True])
def test_public_rows_import_by_fields_and_by_format(shape: str, explicit: bool, db_url: str,
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    rows, kinds = CASES[shape]
    if shape == "likert" and not explicit:
        rows = LIKERT  # HelpSteer's criterion columns are only read under --format likert
        kinds = {"rating": 2}
    path = _write(tmp_path / f"{shape}.jsonl", rows)
    args = ["import", str(path), "--db", db_url, "--json"] + (["--format", shape] if explicit else [])
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["by_kind"] == kinds and summary["feedback_added"] == sum(kinds.values())
    if not explicit:
        return  # same records either way; the store check once per shape
    audit = _store_still_works(db_url, tmp_path, capsys)
    assert audit["scope"]["feedback"] == sum(kinds.values())


def test_ultrafeedback_scores_and_nectar_order_are_kept(sqlite_url: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.formats.examples import RankingExample, RatingExample
    from prefline.formats.load import load_examples

    uf = load_examples(_write(tmp_path / "uf.jsonl", [ULTRAFEEDBACK]), "ultrafeedback")
    assert [(e.response[:10], e.scores) for e in uf if isinstance(e, RatingExample)] == [
        (c["response"][:10], {"overall_score": c["overall_score"]})
        for c in ULTRAFEEDBACK["completions"]]  # type: ignore[union-attr]
    (nectar,) = load_examples(_write(tmp_path / "n.jsonl", [NECTAR]))
    assert isinstance(nectar, RankingExample)
    assert nectar.prompt == [{"role": "user", "content": "0.002 = 1000 \n1 = x?"}]
    assert [r[:12] for r in nectar.responses] == ["If 0.002 equ", "I apologize,", "To find the "]
    thumbs = load_examples(_write(tmp_path / "t.jsonl", THUMBS), "thumbs")
    assert [getattr(e, "label", None) for e in thumbs] == [True, False, True, False]


BAD_SHAPES = {
    "score not a number": ({**LIKERT[0], "rating": "four"}, "likert", "field 'rating'",
                           "expected a number"),
    "thumbs sideways": ({**THUMBS[2], "thumbs": "sideways"}, "thumbs", "field 'thumbs'",
                        "up/down"),
    "empty completion": ({**ULTRAFEEDBACK, "completions": [
        {**ULTRAFEEDBACK["completions"][0], "response": ""}]},  # type: ignore[index]
        "ultrafeedback", "field 'completions[0].response'", "empty"),
    "missing score": ({"instruction": "i", "completions": [{"response": "r"}]}, "ultrafeedback",
                      "field 'completions[0].overall_score'", "missing"),
    "ranking not a permutation": ({**RANKING[0], "ranking": [0, 0, 1]}, "ranking",
                                  "field 'ranking'", "permutation"),
    "wrong shape for format": (THUMBS[0], "ultrafeedback", "line 1", "--format ultrafeedback expects"),
}


@pytest.mark.parametrize("case", sorted(BAD_SHAPES))
def test_bad_shaped_rows_name_the_input_field(case: str, sqlite_url: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    row, fmt, where, what = BAD_SHAPES[case]
    path = _write(tmp_path / "bad.jsonl", [row])
    code, _, err = run_cli(["import", str(path), "--format", fmt, "--db", sqlite_url], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert where in err and what in err, err
