"""Smoke test of the serving benchmark (tiny size): both parts run and report figures."""

from __future__ import annotations

from prefline.bench.serving import main


def test_bench_serving_smoke() -> None:
    out = main(["--requests", "20", "--concurrency", "2"])
    assert out["logging"]["requests"] == 20 and out["logging"]["added_ms_p99"] > 0
    assert out["routing"]["requests"] == 20 and out["routing"]["requests_per_s"] > 0
