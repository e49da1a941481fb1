"""Bad settings and unusable data are refused early, with a sentence saying why; the rows
``prefline export --task kto`` writes train ``--loss kto``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from policy_fixtures import context, pair_rows, toy_pairs, write_jsonl

from cli_runner import run_cli
from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.formats.examples import PreferencePair, as_messages
from prefline.formats.load import load_examples
from prefline.models.backbone import InputBuilder
from prefline.models.tiny import tiny_tokenizer
from prefline.train.lengths import MIN_MAX_LENGTH, cuts
from prefline.train.policy_batch import EncodeReport, _truncate, encode_pairs
from prefline.train.policy_config import DPOConfig
from prefline.train.reward_config import RewardConfig


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_cli(list(args), capsys)


def test_cuts_is_the_truncation_of_both_trainers() -> None:
    """The room check predicts exactly what DPO's and the reward model's truncation do."""
    builder = InputBuilder(tiny_tokenizer(), "decoder", 40)
    specials = len(builder.prefix) + len(builder.middle) + len(builder.suffix)
    for prompt in range(0, 60, 3):
        for longest in range(1, 60, 4):
            p, c, _ = _truncate([7] * prompt, [8] * longest, [9], 40, EncodeReport())
            assert cuts(prompt, longest, 40) == (len(p) < prompt, len(c) < longest)
            ids, head = builder.build([7] * prompt, [8] * longest)
            kept_prompt = head - len(builder.prefix) - len(builder.middle)
            kept_response = len(ids) - head - len(builder.suffix)
            assert cuts(prompt, longest, 40 - specials) == (kept_prompt < prompt,
                                                            kept_response < longest)


def test_one_minimum_for_every_trainer() -> None:
    for cls in (DPOConfig, RewardConfig):
        with pytest.raises(PreflineError, match=f"at least {MIN_MAX_LENGTH} tokens") as err:
            config.build(cls, {"data": "x.jsonl", "max_length": "8"})
        assert err.value.field == "max_length"
        assert config.build(cls, {"data": "x.jsonl", "max_length": "16"}).max_length == 16


def test_max_steps_zero_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for cls in (DPOConfig, RewardConfig):
        with pytest.raises(PreflineError, match="max_steps must be at least 1") as err:
            config.build(cls, {"data": "x.jsonl", "max_steps": "0"})
        assert err.value.field == "max_steps"
    code, _, err_text = _cli(capsys, "train", "dpo", "--data", "x.jsonl", "max_steps=0")
    assert code == 2 and "max_steps must be at least 1" in err_text


def _long_rows(n: int = 12) -> list[dict[str, str]]:
    """Prompts and responses both far longer than 24 tokens."""
    return [{"prompt": f"question {i}: " + "please explain why the sky is blue " * 4,
             "chosen": "Because of Rayleigh scattering of sunlight. " * 4,
             "rejected": "I do not know, sorry about that. " * 4} for i in range(n)]


def test_dpo_max_length_that_cuts_everything_is_refused_before_training(
        tmp_path: Path, tiny_causal_dir: Path) -> None:
    from prefline.train.dpo import run

    data = write_jsonl(tmp_path / "long.jsonl", _long_rows())
    cfg = config.build(DPOConfig, {"data": str(data), "model": str(tiny_causal_dir),
                                   "max_length": "24", "val_fraction": "0", "test_fraction": "0"})
    out = tmp_path / "run"
    with pytest.raises(PreflineError, match=r"max_length 24 is too small to hold a prompt and "
                                            r"a response: it cuts both in every one of the 12 "
                                            r"preference pairs \(the shortest needs \d+ tokens"):
        run(cfg, context(out))
    assert not (out / "model").exists() and not list(out.glob("**/*.pt"))
    kto = config.build(DPOConfig, {"data": str(data), "model": str(tiny_causal_dir),
                                   "max_length": "24", "loss": "kto", "test_fraction": "0"})
    with pytest.raises(PreflineError, match="in every one of the .* KTO examples"):
        run(kto, context(tmp_path / "kto"))


def test_a_budget_that_keeps_whole_responses_is_allowed() -> None:
    """Long prompts are cut from the left as designed; that alone is no reason to refuse."""
    pairs = [PreferencePair(as_messages("x" * 300), "yes", "no")]
    enc, report = encode_pairs(pairs, tiny_tokenizer(), 24)
    assert len(enc) == 1 and report.truncated_prompts == 1 and report.truncated_responses == 0


def test_reward_max_length_that_cuts_everything_is_refused(tmp_path: Path,
                                                           tiny_encoder_dir: Path) -> None:
    from prefline.train.reward import run

    data = write_jsonl(tmp_path / "long.jsonl", _long_rows())
    cfg = config.build(RewardConfig, {"data": str(data), "model": str(tiny_encoder_dir),
                                      "max_length": "24", "test_fraction": "0"})
    out = tmp_path / "rm"
    with pytest.raises(PreflineError, match=r"max_length 24 is too small to hold a prompt and a "
                                            r"response: it cuts both in every one of the \d+ "
                                            r"training examples \(the shortest needs \d+ tokens"):
        run(cfg, context(out))
    assert not list(out.glob("**/*.safetensors"))


def _identical_hh(n: int) -> list[dict[str, str]]:
    return [{"chosen": f"\n\nHuman: q{i}\n\nAssistant: same", "rejected":
             f"\n\nHuman: q{i}\n\nAssistant: same"} for i in range(n)]


def test_no_usable_records_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    tiny_causal_dir: Path) -> None:
    same = write_jsonl(tmp_path / "same.jsonl", _identical_hh(32))
    why = "all 32 pairs have identical chosen and rejected"
    with pytest.raises(PreflineError, match=f"no usable records: {why} \\(line 1, ...\\)"):
        load_examples(same)
    db = f"sqlite:///{tmp_path / 's.db'}"
    code, _, err = _cli(capsys, "import", str(same), "--db", db)
    assert code == 2 and why in err
    code, _, err = _cli(capsys, "train", "dpo", "--data", str(same), "--model",
                        str(tiny_causal_dir), "--db", db)
    assert code == 2 and why in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(PreflineError, match="no usable records: it has no records"):
        load_examples(empty)


def test_ties_only_say_why_they_train_nothing(tmp_path: Path, tiny_causal_dir: Path) -> None:
    from prefline.train.dpo import run

    ties = write_jsonl(tmp_path / "ties.jsonl",
                       [{**r, "tie": True} for r in pair_rows(toy_pairs(6))])
    cfg = config.build(DPOConfig, {"data": str(ties), "model": str(tiny_causal_dir),
                                   "test_fraction": "0"})
    with pytest.raises(PreflineError, match="6 pairwise tie, ignored because a tie prefers "
                                            "neither response"):
        run(cfg, context(tmp_path / "run"))


def test_encoding_nothing_usable_counts_every_reason() -> None:
    pairs = [PreferencePair(as_messages(f"q{i}"), "same", "same") for i in range(3)]
    with pytest.raises(PreflineError, match=r"no usable preference pairs \(all 3 skipped "
                                            r"because chosen and rejected are identical; first: "
                                            r"skipped pair 1"):
        encode_pairs(pairs, tiny_tokenizer(), 64)


def test_kto_trains_on_the_rows_export_kto_writes(tmp_path: Path, tiny_causal_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """import pairs + thumbs -> snapshot -> export --task kto -> train dpo --loss kto FILE."""
    rows = pair_rows(toy_pairs(8)) + [
        {"prompt": f"thumbs {i}?", "completion": "Sure, gladly." if i % 2 else "meh",
         "label": bool(i % 2)} for i in range(6)]
    src = write_jsonl(tmp_path / "mixed.jsonl", rows)
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert _cli(capsys, "import", str(src), "--db", db)[0] == 0
    assert _cli(capsys, "snapshot", "create", "--db", db, "--kind", "pairwise,binary",
                "--test-fraction", "0")[0] == 0
    kto = tmp_path / "kto.jsonl"
    for style in ("conversational", "standard"):
        code, _, err = _cli(capsys, "export", str(kto), "--task", "kto", "--db", db,
                            "--style", style)
        assert code == 0, err
        written = [json.loads(line) for line in kto.read_text().splitlines()]
        assert len(written) == 8 * 2 + 6 and set(written[0]) == {"prompt", "completion", "label"}
        code, out, err = _cli(capsys, "train", "dpo", "--data", str(kto), "--loss", "kto",
                              "--model", str(tiny_causal_dir), "--db", db, "--out",
                              str(tmp_path / f"run-{style}"), "--json", "max_steps=1",
                              "test_fraction=0", "val_fraction=0", "precision=fp32")
        assert code == 0, err
        got = json.loads(out)
        assert got["loss"] == "kto" and got["steps"] == 1
        assert got["counts"]["used"] == {"binary": 22} and got["counts"]["examples"]["train"] == 22
