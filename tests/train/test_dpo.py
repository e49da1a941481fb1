"""DPO training on a tiny model: accumulation, resume, reference cache, LoRA, export, CLI."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from prefline.base.errors import PreflineError
from prefline.formats.examples import PreferencePair, as_messages
from prefline.models.tiny import tiny_causal_lm
from prefline.train.dpo import DPOConfig, train_dpo
from prefline.train.engine import TrainConfig


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest single-threaded, and far faster on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_pairs(n: int = 24, seed: int = 0) -> list[PreferencePair]:
    """Prompts of varied length; the chosen answer is always polite, the rejected curt."""
    rng = random.Random(seed)
    return [PreferencePair(as_messages(f"question {i}: " + "why? " * rng.randint(1, 6)),
                           "Good question, here is a careful answer. " * rng.randint(1, 2),
                           "no" + "!" * rng.randint(0, 5), prompt_key=f"p{i}")
            for i in range(n)]


def _run(out: Path, pairs: list[PreferencePair] | None = None, cfg: DPOConfig | None = None,
         **train: Any) -> Any:
    model, tok = tiny_causal_lm()
    base: dict[str, Any] = dict(lr=2e-3, batch_size=4, max_steps=4, precision="fp32",
                                warmup_ratio=0.0)
    base.update(train)
    return train_dpo(pairs or toy_pairs(), cfg or DPOConfig(beta=0.5, eval_fraction=0.25),
                     TrainConfig(**base), run_dir=out, model=model, tokenizer=tok,
                     register=False)


def _losses(result: Any) -> list[float]:
    return [h["loss"] for h in result.history]


def test_dpo_learns_and_reports_metrics(tmp_path: Path) -> None:
    res = _run(tmp_path, max_steps=6)
    first, last = res.history[0], res.history[-1]
    assert first["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1
    assert last["loss"] < first["loss"] and last["margin"] > 0
    for key in ("accuracy", "reward_chosen", "reward_rejected", "logps_chosen", "kl",
                "tokens_per_s"):
        assert key in last
    assert res.evals[-1]["accuracy"] > 0.5 and res.evals[-1]["pairs"] > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["heldout"]["accuracy"] == res.evals[-1]["accuracy"]


def test_grad_accumulation_equals_large_batch(tmp_path: Path) -> None:
    big = _run(tmp_path / "big", batch_size=4, grad_accum=1)
    acc = _run(tmp_path / "acc", batch_size=2, grad_accum=2)
    torch.testing.assert_close(_losses(acc), _losses(big), rtol=1e-5, atol=1e-6)


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    kw: dict[str, Any] = dict(schedule="constant")  # LR must not depend on max_steps
    full = _run(tmp_path / "full", max_steps=6, **kw)
    _run(tmp_path / "cut", max_steps=3, **kw)
    resumed = _run(tmp_path / "cut", max_steps=6, resume=True, **kw)
    assert resumed.ref_cache_hit
    torch.testing.assert_close(_losses(resumed), _losses(full)[3:], rtol=1e-5, atol=1e-6)


def test_reference_logps_are_cached_on_disk_and_reused(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLINE_CACHE", str(tmp_path / "cache"))  # start empty
    first = _run(tmp_path / "a", max_steps=1)
    second = _run(tmp_path / "b", max_steps=1)
    assert not first.ref_cache_hit and second.ref_cache_hit
    assert _losses(first) == _losses(second)
    # New data gives a new key.
    third = _run(tmp_path / "c", toy_pairs(seed=5), max_steps=1)
    assert not third.ref_cache_hit


def test_lora_adapter_export_loads_with_peft_and_merged_with_transformers(
        tmp_path: Path, tiny_causal_dir: Path) -> None:
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    from prefline.models.hub import load_causal_lm

    def lora_run(out: Path, export: str) -> Any:
        model, tok = load_causal_lm(tiny_causal_dir)
        cfg = DPOConfig(beta=0.5, lora=True, lora_r=4, export=export, eval_fraction=0.0)
        train = TrainConfig(lr=1e-2, batch_size=4, max_steps=3, precision="fp32",
                            warmup_ratio=0.0)
        res = train_dpo(toy_pairs(), cfg, train, run_dir=out, model=model, tokenizer=tok,
                        register=False)
        return res, res.policy

    adapter_res, trained = lora_run(tmp_path / "lora", "auto")
    assert adapter_res.model_path == tmp_path / "lora" / "adapter"
    assert (adapter_res.model_path / "adapter_model.safetensors").exists()
    ids = torch.tensor([[10, 20, 30, 40]])
    with torch.no_grad():
        want = trained(input_ids=ids).logits
        with trained.disable_adapter():
            base = trained(input_ids=ids).logits
        assert not torch.allclose(want, base, atol=1e-5)  # training moved the adapter
        peft_model = AutoPeftModelForCausalLM.from_pretrained(adapter_res.model_path)
        torch.testing.assert_close(peft_model(input_ids=ids).logits, want, atol=1e-5, rtol=1e-5)
    merged_res, _ = lora_run(tmp_path / "merged", "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_res.model_path)
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_other_losses_train(tmp_path: Path) -> None:
    for loss in ("ipo", "simpo", "kto"):
        res = _run(tmp_path / loss, cfg=DPOConfig(loss=loss, beta=0.5, rpo_alpha=0.0,
                                                  eval_fraction=0.0), max_steps=2)
        assert all(torch.isfinite(torch.tensor(_losses(res)))), loss
    rpo = _run(tmp_path / "rpo", cfg=DPOConfig(beta=0.5, rpo_alpha=1.0, eval_fraction=0.0),
               max_steps=1)
    assert rpo.history[0]["loss"] > 0.6932  # the NLL term is added


def test_bad_config_fails_before_loading_anything() -> None:
    with pytest.raises(PreflineError, match="unknown loss"):
        DPOConfig(loss="dpo-ultra")
    with pytest.raises(PreflineError, match="needs --lora"):
        DPOConfig(export="adapter")


def test_cli_trains_offline_and_registers_with_lineage(tmp_path: Path, tiny_causal_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.cli import main
    from prefline.registry import Ref, get_artifact, inputs_of

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p.prompt[0]["content"], "chosen": p.chosen,
                                        "rejected": p.rejected}) + "\n" for p in toy_pairs()))
    db = f"sqlite:///{tmp_path / 'store.db'}"
    from prefline.store.db import upgrade

    upgrade(db)
    main(["train", "dpo", "--data", str(data), "--model", str(tiny_causal_dir), "--out",
          str(tmp_path / "run"), "--beta", "0.5", "--db", db, "--json", "lr=1e-3",
          "--max_steps", "2", "batch_size=4", "precision=fp32"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and Path(summary["model"]).is_dir()
    art = get_artifact(summary["artifact_id"], db=db)
    assert art is not None and art.kind == "policy" and art.config["dpo"]["beta"] == 0.5
    assert art.config["train"]["lr"] == 1e-3 and art.snapshot_hash
    assert inputs_of(art.id, db) == (Ref("data", ref=art.snapshot_hash),
                                     Ref("base_model", ref=str(tiny_causal_dir)))


def test_cli_rejects_unknown_settings_with_one_sentence(tmp_path: Path) -> None:
    from prefline.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "dpo", "--data", str(tmp_path / "x.jsonl"), "learning_rate=1"])
    assert exc.value.code == 2


def test_cli_trains_from_a_store_snapshot(tmp_path: Path, tiny_causal_dir: Path, db_url: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.cli import main
    from prefline.registry import Ref, get_artifact, inputs_of
    from prefline.store.db import upgrade
    from prefline.store.ingest import import_file
    from prefline.store.snapshots import create_snapshot

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p.prompt[0]["content"], "chosen": p.chosen,
                                        "rejected": p.rejected}) + "\n" for p in toy_pairs()))
    upgrade(db_url)
    import_file(data, db_url)
    snap = create_snapshot(db_url, "s1", test_fraction=0.2)
    main(["train", "dpo", "--snapshot", str(snap.id), "--model", str(tiny_causal_dir),
          "--out", str(tmp_path / "run"), "--db", db_url, "--json", "max_steps=1",
          "batch_size=4", "precision=fp32"])
    summary = json.loads(capsys.readouterr().out)
    art = get_artifact(summary["artifact_id"], db=db_url)
    assert art is not None and art.snapshot_hash == snap.content_hash
    assert inputs_of(art.id, db_url)[0] == Ref("snapshot", snapshot_id=snap.id)


def test_cli_settings_precedence_config_then_overrides_then_flags(
        tmp_path: Path, tiny_causal_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.cli import main
    from prefline.registry import get_artifact

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p.prompt[0]["content"], "chosen": p.chosen,
                                        "rejected": p.rejected}) + "\n" for p in toy_pairs(8)))
    config = tmp_path / "dpo.toml"
    config.write_text('[dpo]\nbeta = 0.3\nloss = "ipo"\n[train]\nlr = 0.01\nmax_steps = 1\n'
                      'precision = "fp32"\nbatch_size = 4\n')
    main(["train", "dpo", "--data", str(data), "--model", str(tiny_causal_dir), "--config",
          str(config), "--out", str(tmp_path / "run"), "--json", "beta=0.4", "lr=0.002",
          "--beta", "0.6"])
    art = get_artifact(json.loads(capsys.readouterr().out)["artifact_id"])
    assert art is not None
    assert art.config["dpo"]["loss"] == "ipo" and art.config["dpo"]["beta"] == 0.6
    assert art.config["train"]["lr"] == 0.002 and art.config["train"]["max_steps"] == 1
