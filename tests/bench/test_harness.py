"""The harness's plan and statistics, worked by hand; bad benchmark input fails before any run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prefline.base.errors import PreflineError
from prefline.bench import harness
from prefline.bench.dpo import BENCH as DPO
from prefline.bench.dpo import DPOBenchConfig
from prefline.bench.harness import Benchmark, Side


def _noop(impl: str, setting: str, cfg: Any, inputs: Path, scratch: Path) -> dict[str, Any]:
    return {}


FAKE = Benchmark(name="fake", module="nowhere", config=DPOBenchConfig, run_side=_noop,
                 peers={"peer": ("default", "fastest")}, headline="items_per_s",
                 targets={"items_per_s": (">=", 10.0), "latency_ms": ("<=", 5.0)})


def test_sides_are_interleaved_repetition_by_repetition() -> None:
    sides = harness.sides(FAKE, "peer")
    assert [s.label for s in sides] == ["prefline", "peer", "peer-fastest"]
    plan = harness.schedule(sides, 3)
    assert [(rep, s.label) for rep, s in plan] == [
        (0, "prefline"), (0, "peer"), (0, "peer-fastest"),
        (1, "prefline"), (1, "peer"), (1, "peer-fastest"),
        (2, "prefline"), (2, "peer"), (2, "peer-fastest")]
    assert harness.sides(FAKE, None) == harness.sides(FAKE, "none") == [Side("prefline")]
    assert harness.sides(FAKE, "peer:fastest") == [Side("prefline"), Side("peer", "fastest")]


def test_unknown_peer_or_setting_is_rejected() -> None:
    with pytest.raises(PreflineError, match=r"field 'against'.*no peer 'vllm'"):
        harness.sides(FAKE, "vllm")
    with pytest.raises(PreflineError, match=r"field 'against'.*no setting 'turbo'"):
        harness.sides(FAKE, "peer:turbo")


def test_summaries_are_median_min_max_of_every_common_numeric_leaf() -> None:
    # 3 runs of pairs/s 2, 5, 3 -> sorted 2, 3, 5: median 3, min 2, max 5. An even count
    # (RSS 100, 300) takes the mean of the middle two: 200.
    assert harness.summarise([2.0, 5.0, 3.0]) == {"median": 3.0, "min": 2.0, "max": 5.0}
    assert harness.summarise([100.0, 300.0]) == {"median": 200.0, "min": 100.0, "max": 300.0}
    runs = [{"pairs_per_s": 2, "sqlite": {"seconds": 1.0}, "steps": [1, 2], "ok": True,
             "name": "x", "only_here": 1},
            {"pairs_per_s": 5, "sqlite": {"seconds": 3.0}, "steps": [1], "ok": False,
             "name": "y"},
            {"pairs_per_s": 3, "sqlite": {"seconds": 2.0}, "steps": [], "ok": True,
             "name": "z"}]
    # Lists, flags and text stay in the runs only; a metric one run lacks is not summarised.
    assert harness.summarise_runs(runs) == {
        "pairs_per_s": {"median": 3.0, "min": 2.0, "max": 5.0},
        "sqlite.seconds": {"median": 2.0, "min": 1.0, "max": 3.0}}


def test_comparisons_and_targets_use_medians() -> None:
    def side(items: list[float], rss: float) -> dict[str, Any]:
        return {"metrics": harness.summarise_runs(
            [{"items_per_s": x, "peak_rss_mb": rss} for x in items])}

    by_side = {"prefline": side([8.0, 12.0, 10.0], 500.0), "peer": side([4.0, 6.0, 5.0], 1000.0)}
    # speedup 10 / 5 = 2; RSS 500 / 1000 = 0.5.
    assert harness._comparisons(FAKE, by_side) == {"peer": {"speedup": 2.0, "rss_ratio": 0.5}}
    # items_per_s median 10 >= 10 is met; latency_ms was not measured, so it is not judged.
    assert harness._targets(FAKE, by_side["prefline"]["metrics"]) == {
        "items_per_s": {"op": ">=", "value": 10.0, "median": 10.0, "met": True}}


def test_bad_settings_fail_before_any_run(tmp_path: Path) -> None:
    with pytest.raises(PreflineError, match="field 'reps'"):
        harness.run(DPO, DPOBenchConfig(), reps=0)
    with pytest.raises(PreflineError, match="field 'steps'"):
        DPOBenchConfig(steps=0)
    from prefline.bench.generation import GenerationBenchConfig

    with pytest.raises(PreflineError, match="field 'settings'.*dtype:batch:threads"):
        GenerationBenchConfig(settings=("float32:x:1",))


def test_the_cli_rejects_an_unknown_peer(capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "reward", "--against", "vllm", "--reps", "1"])
    assert exit_.value.code == 2
    assert "no peer 'vllm'" in capsys.readouterr().err


def test_a_side_refuses_a_setting_its_peer_does_not_have(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        harness.side_main(DPO, ["--side", "prefline", "--setting", "fastest", "--config",
                                str(tmp_path / "c.json"), "--inputs", str(tmp_path),
                                "--workdir", str(tmp_path), "--out", str(tmp_path / "o.json")])
    assert exit_.value.code == 2
