"""Reward training on the shared engine: resume, accumulation, end to end, every kind of
feedback from a real store, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.testing import assert_close

from prefline.base import config
from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter
from prefline.formats.examples import PreferencePair, RankingExample, RatingExample
from prefline.models.reward import RewardEnsemble, RewardModel, load_reward_model
from prefline.store.context import Context, Store
from prefline.train.engine import TrainConfig, Trainer
from prefline.train.reward import RewardConfig, run
from prefline.train.reward_task import RewardTask, rating_targets, tokenize


def _pairs(n: int = 16) -> list[PreferencePair]:
    return [PreferencePair([{"role": "user", "content": f"q{i}?"}], "yes " * (1 + i % 3),
                           "no", tags=("even" if i % 2 == 0 else "odd",)) for i in range(n)]


def _model(path: Path, seed: int = 0) -> RewardModel:
    return RewardModel.create(str(path), max_length=32, head_dropout=0.1, seed=seed)


def _cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(lr=1e-3, precision="fp32", warmup_ratio=0.0, epochs=1,
                                batch_size=4)
    base.update(kw)
    return TrainConfig(**base)


def _trainable(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in m.parameters() if p.requires_grad])


def test_resume_equals_uninterrupted(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    full = _model(tiny_encoder_dir)
    items = tokenize(full, _pairs())
    ref = Trainer(full, RewardTask(full.make_batch), items, _cfg(), run_dir=tmp_path / "full").fit()

    part = _model(tiny_encoder_dir)
    cut = Trainer(part, RewardTask(part.make_batch), items, _cfg(save_every=2),
                  run_dir=tmp_path / "r")
    cut.total = 2  # the process "dies" after step 2 of 4
    cut.fit()
    fresh = _model(tiny_encoder_dir, seed=7)  # a different head init: resume must overwrite it
    res = Trainer(fresh, RewardTask(fresh.make_batch), items,
                  _cfg(resume=True), run_dir=tmp_path / "r").fit()
    assert res.steps == ref.steps == 4
    assert_close([h["loss"] for h in res.history], [h["loss"] for h in ref.history[2:]])
    assert_close(_trainable(fresh), _trainable(full))


def test_grad_accumulation_equals_large_batch(tiny_causal_dir: Path, tmp_path: Path) -> None:
    big = RewardModel.create(str(tiny_causal_dir), max_length=32, head_dropout=0.0, dropout=0.0)
    small = RewardModel.create(str(tiny_causal_dir), max_length=32, head_dropout=0.0, dropout=0.0)
    items = tokenize(big, _pairs(8))
    a = Trainer(big, RewardTask(big.make_batch), items,
                _cfg(batch_size=8, max_steps=1), run_dir=tmp_path / "a").fit()
    b = Trainer(small, RewardTask(small.make_batch), items,
                _cfg(batch_size=2, grad_accum=4, max_steps=1), run_dir=tmp_path / "b").fit()
    # Adam's first step is scale-invariant, so compare the loss and the gradient norm too:
    # a wrong 1/N would change those even where it cannot move the weights.
    for key in ("loss", "grad_norm", "accuracy"):
        assert a.history[0][key] == pytest.approx(b.history[0][key], rel=1e-5)
    assert_close(_trainable(big), _trainable(small), atol=5e-5, rtol=1e-4)


def test_ties_rankings_and_ratings_all_contribute(tiny_encoder_dir: Path) -> None:
    model = _model(tiny_encoder_dir)
    prompt = [{"role": "user", "content": "hi"}]
    examples = [PreferencePair(prompt, "a", "b"), PreferencePair(prompt, "c", "d", tie=True),
                RankingExample(prompt, ("x", "y", "z")), RatingExample(prompt, "r", {"reward": 4.0})]
    items = tokenize(model, examples, {"reward": (3.0, 1.0)})
    assert [it.kind for it in items] == ["pair", "tie", "ranking", "rating"]
    assert items[3].targets == (1.0,)
    task = RewardTask(model.make_batch)
    loss, n, metrics = task.loss(model, task.collate(items))
    assert n == 4 and torch.isfinite(loss) and loss.requires_grad
    # Only the strict pair counts towards accuracy.
    assert metrics["accuracy"] in (0.0, 1.0)


def test_a_single_head_learns_from_ratings_of_any_criterion() -> None:
    stats = {"helpful": (3.0, 2.0), "honest": (1.0, 1.0)}
    # The head's own criterion wins; otherwise the mean of the standardised scores.
    assert rating_targets(("reward",), {"reward": 5.0, "helpful": 1.0}, {}) == (5.0,)
    assert rating_targets(("reward",), {"helpful": 5.0, "honest": 0.0}, stats) == (0.0,)
    two = rating_targets(("helpful", "honest"), {"helpful": 5.0}, stats)
    assert two[0] == 1.0 and math.isnan(two[1])
    with pytest.raises(PreflineError, match="criterion 'style' has no head"):
        rating_targets(("helpful", "honest"), {"style": 1.0}, stats)


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n: int = 40) -> list[dict[str, Any]]:
    return [{"prompt": f"question {i}?", "chosen": "good answer " * (1 + i % 3),
             "rejected": "bad", "tags": ["a" if i % 2 else "b"]} for i in range(n)]


def _ctx(db: str, run_dir: Path) -> Context:
    return Context(store=Store.open(db), run_dir=run_dir, progress=Reporter(False))


def _fast(**kw: Any) -> dict[str, Any]:
    return {"max_length": "48", "lr": "1e-3", "precision": "fp32", **kw}


def test_reward_defaults_differ_from_the_engine_and_show_in_settings() -> None:
    cfg = config.build(RewardConfig, {"data": "x.jsonl"})
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.epochs,
            cfg.train.early_stopping_patience) == (5e-5, 0.01, 2, 2)
    shown = {s.key: s.default for s in config.settings(RewardConfig)}
    assert shown["train.weight_decay"] == 0.01 and shown["train.epochs"] == 2
    assert all(s.doc for s in config.settings(RewardConfig)), "every setting is documented"
    assert config.build(RewardConfig, {"data": "x", "epochs": "3"}).train.weight_decay == 0.01


def test_train_on_a_file_end_to_end(tiny_encoder_dir: Path, tmp_path: Path,
                                    sqlite_url: str) -> None:
    from prefline.registry import get_artifact, inputs_of, record_result

    data = _write(tmp_path / "pairs.jsonl", _rows())
    cfg = config.build(RewardConfig, _fast(data=str(data), model=str(tiny_encoder_dir),
                                           epochs="2", val_fraction="0.2",
                                           test_fraction="0.2"))
    result = run(cfg, _ctx(sqlite_url, tmp_path / "rm"))
    card = json.loads((tmp_path / "rm" / "model_card.json").read_text())
    for key in ("backbone", "config", "snapshot_hash", "metrics", "normalisation",
                "temperature", "splits", "feedback"):
        assert key in card
    assert result.path == tmp_path / "rm" and sum(result.splits.values()) == 40
    # The counts cover the training split; the file's test prompts are held out.
    assert result.splits["test"] > 0 and result.counts.used == {"pairwise": 40 - result.splits["test"]}
    m = result.metrics
    assert m.val_pairs == result.splits["val"] and 0 <= m.val_accuracy <= 1
    assert m.val_ece_after <= m.val_ece_before + 1e-9
    assert [i.role for i in result.inputs] == ["data", "base_model"]
    assert result.inputs[0].ref == result.snapshot_hash == card["snapshot_hash"]
    loaded = load_reward_model(tmp_path / "rm")
    assert isinstance(loaded, RewardModel)
    good, bad = loaded.score("question 1?", ["good answer good answer", "bad"])
    assert good > bad  # the easy shortcut in this toy data was learnt
    art_id = record_result(sqlite_url, result, cfg)
    stored = get_artifact(art_id, db=sqlite_url)
    assert stored is not None and stored.kind == "reward_model"
    assert [r.role for r in inputs_of(art_id, db=sqlite_url)] == ["data", "base_model"]
    json.dumps(result.to_json())  # plain JSON all the way down


def test_bootstrap_ensemble_scores_mean_and_std(tiny_encoder_dir: Path, tmp_path: Path,
                                                sqlite_url: str) -> None:
    data = _write(tmp_path / "pairs.jsonl", _rows(24))
    cfg = config.build(RewardConfig, _fast(data=str(data), model=str(tiny_encoder_dir),
                                           ensemble="2", ensemble_mode="bootstrap",
                                           max_steps="2"))
    run(cfg, _ctx(sqlite_url, tmp_path / "ens"))
    ens = load_reward_model(tmp_path / "ens")
    assert isinstance(ens, RewardEnsemble) and len(ens.members) == 2
    mean, std = ens.score_with_std("question 1?", ["good answer", "bad"])
    assert len(mean) == len(std) == 2 and all(s >= 0 for s in std)


MIXED = [
    *[{"prompt": f"q{i}?", "chosen": "a careful helpful answer " * (1 + i % 2),
       "rejected": "no", "annotator": "ann"} for i in range(12)],
    *[{"prompt": f"q{i}?", "response": "a careful helpful answer", "scores": {"helpful": 4},
       "annotator": "ann"} for i in range(12, 18)],
    *[{"prompt": f"q{i}?", "response": "no", "scores": {"helpful": 1}, "annotator": "ann"}
      for i in range(12, 16)],
    *[{"prompt": f"q{i}?", "responses": ["best answer here", "an answer", "no"],
       "order": [0, 1, 2], "annotator": "ann"} for i in range(18, 21)],
    *[{"prompt": f"q{i}?", "completion": "thumbs " * (1 + i % 3), "label": i % 2 == 0,
       "annotator": "ann"} for i in range(21, 26)],
]


def test_a_snapshot_mixing_pairs_ratings_rankings_and_thumbs_trains(
        tiny_encoder_dir: Path, tmp_path: Path, sqlite_url: str) -> None:
    """Issue 10's "done when": thumbs no longer fail reward training; each kind is counted."""
    from prefline.store.ingest import import_file
    from prefline.store.snapshots import create_snapshot

    import_file(_write(tmp_path / "mixed.jsonl", MIXED), sqlite_url)
    snap = create_snapshot(sqlite_url, "mixed", test_fraction=0.0)
    cfg = config.build(RewardConfig, _fast(snapshot="mixed", model=str(tiny_encoder_dir),
                                           val_fraction="0.0", max_steps="2"))
    result = run(cfg, _ctx(sqlite_url, tmp_path / "rm"))
    # 10 (prompt, response) ratings, 12 pairs, 3 rankings, 5 thumbs: thumbs are left out
    # with a reason, everything else trains.
    assert result.counts.used == {"pairwise": 12, "rating": 10, "ranking": 3}
    assert result.counts.ignored == {"binary": 5}
    assert "KTO" in result.counts.why["binary"]
    assert any(line.startswith("ignored 5 binary") for line in result.counts.lines())
    assert result.splits == {"train": 25, "val": 0, "test": 0}
    assert result.inputs[0].snapshot_id == snap.id and result.snapshot_hash == snap.content_hash
    card = json.loads((tmp_path / "rm" / "model_card.json").read_text())
    assert card["feedback"]["ignored"] == {"binary": 5}


def test_thumbs_only_is_a_clear_error(tmp_path: Path, sqlite_url: str) -> None:
    data = _write(tmp_path / "thumbs.jsonl", MIXED[-5:])
    with pytest.raises(PreflineError, match=r"no pairs, rankings or ratings.*5 binary"):
        run(RewardConfig(data=str(data), test_fraction=0.0), _ctx(sqlite_url, tmp_path / "x"))


def test_bad_inputs_are_clear_errors(tiny_encoder_dir: Path, tmp_path: Path,
                                     sqlite_url: str) -> None:
    ties = _write(tmp_path / "ties.jsonl", [{**r, "tie": True} for r in _rows(12)])
    with pytest.raises(PreflineError, match="every training pair is a tie"):
        run(RewardConfig(data=str(ties), model=str(tiny_encoder_dir), test_fraction=0.0),
            _ctx(sqlite_url, tmp_path / "x"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(PreflineError, match="no usable records"):
        run(RewardConfig(data=str(empty)), _ctx(sqlite_url, tmp_path / "y"))
    with pytest.raises(PreflineError, match="unknown setting") as exc:
        config.build(RewardConfig, {"data": "x", "learning_rate": "1"}, command="train reward")
    assert exc.value.field == "learning_rate"
    with pytest.raises(PreflineError, match="exactly one of"):
        RewardConfig(data="x", snapshot="1")
    with pytest.raises(PreflineError, match="exactly one of"):  # neither: refused by run()
        run(RewardConfig(), _ctx(sqlite_url, tmp_path / "z"))
    with pytest.raises(PreflineError, match="expected int") as exc:
        config.build(RewardConfig, {"data": "x", "epochs": "many"})
    assert exc.value.field == "train.epochs"
    for bad, field in (({"ensemble": "0"}, "ensemble"), ({"val_fraction": "0.7"}, "val_fraction"),
                       ({"tie_loss": "bt"}, "tie_loss"), ({"head_weights": '{"x": 1}'}, "heads"),
                       ({"early_stopping_metric": "loss"}, "train.early_stopping_metric")):
        with pytest.raises(PreflineError) as exc:
            config.build(RewardConfig, {"data": "x", **bad})
        assert exc.value.field == field
    assert not any((tmp_path / d / "model_card.json").exists() for d in ("x", "y"))


@pytest.mark.slow
def test_default_minilm_backbone_trains_a_few_steps(tmp_path: Path, sqlite_url: str) -> None:
    """The embedded all-MiniLM-L6-v2 is the default: no model setting needed, works offline."""
    data = _write(tmp_path / "pairs.jsonl", _rows(10))
    cfg = config.build(RewardConfig, {"data": str(data), "max_length": 64, "val_fraction": 0.2,
                                      "test_fraction": 0.2, "max_steps": 2, "batch_size": 4})
    result = run(cfg, _ctx(sqlite_url, tmp_path / "rm"))
    from prefline.models.embedded import minilm_dir

    card = json.loads((tmp_path / "rm" / "model_card.json").read_text())
    assert card["backbone"] == str(minilm_dir())
    scores = load_reward_model(result.path).score("question 1?", ["good answer", "bad"])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)
