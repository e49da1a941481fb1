"""DPO-family training on a tiny model through ``run(cfg, ctx)``: learning, accumulation,
resume, reference cache, LoRA export, what each kind of feedback becomes, and the CLI."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
from policy_fixtures import config, context, mixed_rows, pair_rows, toy_pairs, write_jsonl
from typer.testing import CliRunner

from prefline.base import config as config_system
from prefline.base.errors import PreflineError
from prefline.formats.load import load_examples
from prefline.losses.policy import LOSSES
from prefline.train.dpo import DPOResult, run
from prefline.train.policy_config import DPOConfig, PolicyLoss
from prefline.train.policy_data import select


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", pair_rows(toy_pairs()))


def _run(out: Path, data: Path, model: Path, **kw: Any) -> DPOResult:
    return run(config(data, model, **kw), context(out))


def _losses(result: DPOResult) -> list[float]:
    return [h["loss"] for h in result.history]


def test_dpo_learns_and_reports_metrics(tmp_path: Path, pairs_file: Path,
                                        tiny_causal_dir: Path) -> None:
    res = _run(tmp_path / "run", pairs_file, tiny_causal_dir, test_fraction=0.2,
               train={"max_steps": 6})
    first, last = res.history[0], res.history[-1]
    assert first["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1
    assert last["loss"] < first["loss"] and last["margin"] > 0
    for key in ("accuracy", "reward_chosen", "reward_rejected", "logps_chosen", "kl",
                "tokens_per_s"):
        assert key in last
    ex = res.counts["examples"]
    assert ex["val"] > 0 and ex["heldout"] > 0 and ex["train"] + ex["val"] + ex["heldout"] == 24
    assert res.metrics["val"]["accuracy"] > 0.5 and res.metrics["heldout"]["pairs"] == ex["heldout"]
    assert res.counts["used"] == {"pairwise": ex["train"] + ex["val"]} and not res.counts["ignored"]
    assert res.inputs[1].role == "base_model" and res.inputs[1].ref == str(tiny_causal_dir)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metrics"]["heldout"] == res.metrics["heldout"] and "policy" not in summary


def test_grad_accumulation_equals_large_batch(tmp_path: Path, pairs_file: Path,
                                              tiny_causal_dir: Path) -> None:
    big = _run(tmp_path / "big", pairs_file, tiny_causal_dir, train={"batch_size": 4})
    acc = _run(tmp_path / "acc", pairs_file, tiny_causal_dir,
               train={"batch_size": 2, "grad_accum": 2})
    torch.testing.assert_close(_losses(acc), _losses(big), rtol=1e-5, atol=1e-6)


def test_resume_equals_uninterrupted(tmp_path: Path, pairs_file: Path,
                                     tiny_causal_dir: Path) -> None:
    kw: dict[str, Any] = dict(schedule="constant")  # LR must not depend on max_steps
    full = _run(tmp_path / "full", pairs_file, tiny_causal_dir, train={"max_steps": 6, **kw})
    _run(tmp_path / "cut", pairs_file, tiny_causal_dir, train={"max_steps": 3, **kw})
    resumed = _run(tmp_path / "cut", pairs_file, tiny_causal_dir,
                   train={"max_steps": 6, "resume": True, **kw})
    assert resumed.ref_cache_hit
    torch.testing.assert_close(_losses(resumed), _losses(full)[3:], rtol=1e-5, atol=1e-6)


def test_reference_logps_are_cached_on_disk_and_reused(
        tmp_path: Path, pairs_file: Path, tiny_causal_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLINE_CACHE", str(tmp_path / "cache"))  # start empty
    first = _run(tmp_path / "a", pairs_file, tiny_causal_dir, train={"max_steps": 1})
    second = _run(tmp_path / "b", pairs_file, tiny_causal_dir, train={"max_steps": 1})
    assert not first.ref_cache_hit and second.ref_cache_hit
    assert _losses(first) == _losses(second)
    other = write_jsonl(tmp_path / "other.jsonl", pair_rows(toy_pairs(seed=5)))
    assert not _run(tmp_path / "c", other, tiny_causal_dir, train={"max_steps": 1}).ref_cache_hit


def test_lora_adapter_export_loads_with_peft_and_merged_with_transformers(
        tmp_path: Path, pairs_file: Path, tiny_causal_dir: Path) -> None:
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    def lora_run(out: Path, export: str) -> DPOResult:
        return _run(out, pairs_file, tiny_causal_dir, lora=True, lora_r=4, export=export,
                    val_fraction=0.0, train={"lr": 1e-2, "max_steps": 3})

    adapter_res = lora_run(tmp_path / "lora", "auto")
    trained = adapter_res.policy
    assert adapter_res.path == tmp_path / "lora" / "adapter"
    assert (adapter_res.path / "adapter_model.safetensors").exists()
    ids = torch.tensor([[10, 20, 30, 40]])
    with torch.no_grad():
        want = trained(input_ids=ids).logits
        with trained.disable_adapter():
            base = trained(input_ids=ids).logits
        assert not torch.allclose(want, base, atol=1e-5)  # training moved the adapter
        peft_model = AutoPeftModelForCausalLM.from_pretrained(adapter_res.path)
        torch.testing.assert_close(peft_model(input_ids=ids).logits, want, atol=1e-5, rtol=1e-5)
    merged = AutoModelForCausalLM.from_pretrained(lora_run(tmp_path / "merged", "merged").path)
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_other_losses_train(tmp_path: Path, pairs_file: Path, tiny_causal_dir: Path) -> None:
    for loss in ("ipo", "simpo"):
        res = _run(tmp_path / loss, pairs_file, tiny_causal_dir, loss=loss, val_fraction=0.0,
                   train={"max_steps": 2})
        assert all(torch.isfinite(torch.tensor(_losses(res)))), loss
    rpo = _run(tmp_path / "rpo", pairs_file, tiny_causal_dir, rpo_alpha=1.0, val_fraction=0.0,
               train={"max_steps": 1})
    assert rpo.history[0]["loss"] > 0.6932  # the NLL term is added


def test_bad_config_fails_before_loading_anything(tmp_path: Path) -> None:
    assert set(typing.get_args(PolicyLoss)) == set(LOSSES)
    with pytest.raises(PreflineError, match="unknown loss"):
        DPOConfig(loss="dpo-ultra")  # type: ignore[arg-type]
    with pytest.raises(PreflineError, match="needs --lora"):
        DPOConfig(export="adapter")
    with pytest.raises(PreflineError, match="not both"):
        DPOConfig(snapshot="1", data="x.jsonl")
    with pytest.raises(PreflineError, match="not kto"):
        DPOConfig(loss="kto", rpo_alpha=0.5)
    with pytest.raises(PreflineError, match="give a snapshot") as err:
        run(DPOConfig(model=str(tmp_path / "no-such-model")), context(tmp_path / "run"))
    assert err.value.field == "snapshot"
    on_gpu = dataclasses.replace(context(tmp_path / "run"), device="cuda")
    if not torch.cuda.is_available():  # a GPU this machine lacks is refused first
        with pytest.raises(PreflineError, match="no CUDA device") as err:
            run(DPOConfig(data="x.jsonl"), on_gpu)
        assert err.value.field == "device"


def test_dpo_uses_pairs_and_rankings_and_says_why_it_ignores_the_rest(tmp_path: Path) -> None:
    examples = load_examples(write_jsonl(tmp_path / "mixed.jsonl", mixed_rows()))
    pairs, use = select(examples, kto=False)
    assert use.used == {"pairwise": 12, "ranking→pairs": 2}
    assert len(pairs) == 12 + 2 * 3  # a ranking of 3 implies 3 pairs
    assert use.ignored["rating"]["count"] == 4 and "reward model" in use.ignored["rating"]["why"]
    assert use.ignored["binary"]["count"] == 10 and "loss=kto" in use.ignored["binary"]["why"]


def test_help_lists_every_setting() -> None:
    from prefline.cli import app

    text = CliRunner().invoke(app, ["train", "dpo", "--help"], env={"COLUMNS": "250"}).output
    flat = " ".join(text.replace("│", " ").split())  # help text wrapped inside the panel
    settings = config_system.settings(DPOConfig)
    assert {s.key for s in settings} >= {"beta", "loss", "snapshot", "data", "train.lr",
                                         "train.grad_accum", "train.resume"}
    for s in settings:
        flag = "--" + s.name.replace("_", "-")
        assert flag in text and (s.hint is not bool or "--no-" + flag[2:] in text), s.key
        shown = "none" if s.default is None else str(s.default)
        assert s.doc and f"{s.doc} (default: {shown})" in flat, s.key


def test_cli_trains_offline_and_records_lineage(tmp_path: Path, pairs_file: Path,
                                               tiny_causal_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.cli import main
    from prefline.registry import Ref, get_artifact, inputs_of

    db = f"sqlite:///{tmp_path / 'store.db'}"
    main(["train", "dpo", "--data", str(pairs_file), "--model", str(tiny_causal_dir), "--out",
          str(tmp_path / "run"), "--beta", "0.5", "--db", db, "--json", "lr=1e-3",
          "--max-steps", "2", "batch_size=4", "precision=fp32"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and Path(summary["path"]).is_dir()
    assert summary["counts"]["used"] == {"pairwise": 24 - summary["counts"]["examples"]["heldout"]}
    art = get_artifact(summary["artifact_id"], db=db)
    assert art is not None and art.kind == "policy" and art.config["beta"] == 0.5
    assert art.config["train"]["lr"] == 1e-3 and art.snapshot_hash == summary["snapshot_hash"]
    assert inputs_of(art.id, db) == (Ref("data", ref=art.snapshot_hash),
                                     Ref("base_model", ref=str(tiny_causal_dir)))


def test_cli_rejects_unknown_settings_with_one_sentence(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "dpo", "--data", str(tmp_path / "x.jsonl"), "learning_rate=1"])
    assert exc.value.code == 2
    assert "learning_rate" in capsys.readouterr().err


def test_cli_trains_from_a_store_snapshot_and_prints_what_it_used(
        tmp_path: Path, tiny_causal_dir: Path, db_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.cli import main
    from prefline.registry import Ref, get_artifact, inputs_of
    from prefline.store.db import upgrade
    from prefline.store.ingest import import_file
    from prefline.store.snapshots import create_snapshot

    upgrade(db_url)
    import_file(write_jsonl(tmp_path / "mixed.jsonl", mixed_rows(n_pairs=24)), db_url)
    snap = create_snapshot(db_url, "s1", test_fraction=0.2)
    main(["train", "dpo", "--snapshot", str(snap.id), "--model", str(tiny_causal_dir),
          "--out", str(tmp_path / "run"), "--db", db_url, "max_steps=1", "batch_size=4",
          "precision=fp32"])
    text = capsys.readouterr().out
    assert "ignored" in text and "rating record(s): DPO needs pairs" in text
    art_id = int(text.split("(artifact ")[1].split(")")[0])
    art = get_artifact(art_id, db=db_url)
    assert art is not None and art.snapshot_hash == snap.content_hash
    assert inputs_of(art.id, db_url)[0] == Ref("snapshot", snapshot_id=snap.id)


def test_cli_settings_precedence_config_then_overrides_then_flags(
        tmp_path: Path, tiny_causal_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.cli import main
    from prefline.registry import get_artifact

    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(toy_pairs(8)))
    cfg_file = tmp_path / "dpo.toml"
    cfg_file.write_text('beta = 0.3\nloss = "ipo"\n[train]\nlr = 0.01\nmax_steps = 1\n'
                        'precision = "fp32"\nbatch_size = 4\n')
    main(["train", "dpo", "--data", str(data), "--model", str(tiny_causal_dir), "--config",
          str(cfg_file), "--out", str(tmp_path / "run"), "--json", "beta=0.4", "lr=0.002",
          "--beta", "0.6"])
    art = get_artifact(json.loads(capsys.readouterr().out)["artifact_id"])
    assert art is not None
    assert art.config["loss"] == "ipo" and art.config["beta"] == 0.6
    assert art.config["train"]["lr"] == 0.002 and art.config["train"]["max_steps"] == 1


@pytest.mark.parametrize("name", ["dpo-lora", "dpo-full"])
def test_shipped_configs_parse_and_validate(name: str) -> None:
    path = Path(__file__).parents[2] / "configs" / f"{name}.toml"
    cfg = config_system.load(DPOConfig, path, command="train dpo")
    assert cfg.lora == (name == "dpo-lora") and cfg.snapshot is None and cfg.data is None
    assert cfg.train.lr == (2e-4 if cfg.lora else 1e-6)
