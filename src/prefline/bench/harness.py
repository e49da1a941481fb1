"""The one benchmark harness: every ``prefline bench …`` is measured by :func:`run`.

Whatever a benchmark measures, it is measured the same way:

- Each side (prefline; the peer in its default setting; the peer in its fastest setting
  where that differs) runs in its own subprocess, ``python -m prefline.bench.<name> --side
  prefline|trl ...``, so imports, caches and peak RSS (``ru_maxrss``) are that run's alone.
  Runs go one after another, never concurrently.
- Repetitions are interleaved (prefline, peer, prefline, peer, ...): a change in machine
  load during the benchmark then hits every side alike instead of one side's whole block.
- The parent writes the workload (pairs, splits, generated records) once into a folder that
  every run reads, so all sides see identical data with the same batch size (and, where the
  benchmark arranges it, identical batches: DPO trains every step on the same pairs).
- Every numeric result is reported as the median with min and max over the repetitions;
  ratios compare medians.
- Machine facts go into the same JSON: cores, torch threads, CPU model, bf16 and fp32 matmul
  peaks measured in this run (at its start and end), the load average and the share of CPU
  that other processes used while it ran, so a figure from a busy machine says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefline.base import config
from prefline.base.errors import PreflineError

# Children never reach the network: models and data are local, or the run fails loudly.
OFFLINE_ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
HH_NAME = "hh-rlhf-harmless-base-test.first800.jsonl.gz"
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}

PEAK_SIZE = 2048
"""Side of the square matmuls whose best time gives the machine's peak TFLOP/s."""

RunSide = Callable[[str, str, Any, Path, Path], dict[str, Any]]


@dataclass(frozen=True)
class Side:
    """One contestant: an implementation (``--side``) in one of its settings."""

    impl: str
    setting: str = "default"

    @property
    def label(self) -> str:
        return self.impl if self.setting == "default" else f"{self.impl}-{self.setting}"


@dataclass(frozen=True)
class Benchmark:
    """What a benchmark module hands the harness (its module-level ``BENCH``)."""

    name: str
    module: str
    """Run as ``python -m <module> --side ...`` for each side."""
    config: type
    """Frozen, validated config dataclass; it travels to the children as JSON."""
    run_side: RunSide
    """In the child: ``(impl, setting, cfg, inputs dir, scratch dir) -> one run's results``."""
    prepare: Callable[[Any, Path], dict[str, Any]] | None = None
    """In the parent, once: write the shared workload into the inputs dir; returns facts."""
    peers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Peer -> its settings: "default" first, then "fastest" where that differs."""
    headline: str = ""
    """The throughput metric (higher is better) that ``speedup`` compares."""
    targets: Mapping[str, tuple[str, float]] = field(default_factory=dict)
    """metric -> (">=" or "<=", value), judged on prefline's median."""
    derive: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    """``(run, machine) -> extra metrics`` computed after the runs (e.g. MFU from the peak)."""


# ----- plan and statistics -------------------------------------------------------------------

def sides(bench: Benchmark, against: str | None) -> list[Side]:
    """prefline, then each setting of the peer ``against`` (None or "none": prefline only);
    ``peer:setting`` (e.g. ``trl:fastest``) runs the peer in that one setting."""
    out = [Side("prefline")]
    if against in (None, "none"):
        return out
    peer, _, setting = against.partition(":")
    if peer not in bench.peers:
        known = ", ".join([*bench.peers, "none"])
        raise PreflineError(f"bench {bench.name} has no peer {peer!r}; expected one of "
                            f"{known}", field="against")
    settings = bench.peers[peer]
    if setting and setting not in settings:
        raise PreflineError(f"peer {peer} has no setting {setting!r}; expected one of "
                            f"{', '.join(settings)}", field="against")
    return out + [Side(peer, s) for s in ((setting,) if setting else settings)]


def schedule(contestants: Sequence[Side], reps: int) -> list[tuple[int, Side]]:
    """``(rep, side)`` in run order: every side once per repetition, repetitions in turn."""
    return [(rep, side) for rep in range(reps) for side in contestants]


def summarise(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of one metric over the repetitions."""
    return {"median": float(statistics.median(values)), "min": float(min(values)),
            "max": float(max(values))}


def numbers(result: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a (nested) result as dotted keys; flags, text and lists skipped."""
    out: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, Mapping):
            out.update(numbers(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def summarise_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """``{metric: {median, min, max}}`` for every numeric metric that each run reported."""
    flat = [numbers(r) for r in runs]
    common = [k for k in flat[0] if all(k in f for f in flat[1:])] if flat else []
    return {k: summarise([f[k] for f in flat]) for k in common}


# ----- machine facts -------------------------------------------------------------------------

def matmul_peak_tflops(dtype: str, size: int | None = None, reps: int = 3) -> float:
    """Best observed TFLOP/s of a square ``dtype`` matmul (bfloat16 | float32) of side
    ``size`` (default :data:`PEAK_SIZE`)."""
    import torch

    size = size or PEAK_SIZE
    a = torch.randn(size, size, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, dtype=getattr(torch, dtype))
    a @ b  # warm-up: kernel selection and page faults
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e12


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields) - idle) / tick, sum(fields) / tick


def _own_cpu_seconds() -> float:
    """CPU used by this process and every child it has waited for (the benchmark itself)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class MachineWatch:
    """Machine facts at the start and the end of a benchmark, and who else used the CPU."""

    def __init__(self, threads: int | None) -> None:
        import torch

        self.threads = threads or torch.get_num_threads()
        self.start = self._sample()
        self.busy0, self.all0 = _cpu_seconds()
        self.own0 = _own_cpu_seconds()

    def _sample(self) -> dict[str, Any]:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)  # the peak at the sides' thread count
        try:
            return {"load_avg": [round(x, 2) for x in os.getloadavg()],
                    "bf16": matmul_peak_tflops("bfloat16"), "fp32": matmul_peak_tflops("float32")}
        finally:
            torch.set_num_threads(before)

    def finish(self) -> dict[str, Any]:
        busy, total = _cpu_seconds()
        own = _own_cpu_seconds() - self.own0
        others = max(0.0, (busy - self.busy0) - own) / max(total - self.all0, 1e-9)
        end = self._sample()
        load = self.start["load_avg"][0]
        return {
            "cores": os.cpu_count(), "torch_threads": self.threads, "cpu_model": cpu_model(),
            "bf16_peak_tflops": round(max(self.start["bf16"], end["bf16"]), 3),
            "fp32_peak_tflops": round(max(self.start["fp32"], end["fp32"]), 3),
            "peak_samples_tflops": {"bf16": [round(self.start["bf16"], 3), round(end["bf16"], 3)],
                                    "fp32": [round(self.start["fp32"], 3), round(end["fp32"], 3)]},
            "load_avg_start": self.start["load_avg"], "load_avg_end": end["load_avg"],
            "others_cpu_share": round(others, 3),
            # Busy: something else was runnable when we started, or took >= 10% of the CPUs.
            "busy": load >= 0.5 or others >= 0.1,
        }


# ----- parent: run every side ----------------------------------------------------------------

def _spawn(bench: Benchmark, side: Side, cfg_file: Path, inputs: Path, scratch: Path,
           threads: int | None) -> dict[str, Any]:
    scratch.mkdir(parents=True)
    out = scratch / "result.json"
    cmd = [sys.executable, "-m", bench.module, "--side", side.impl, "--setting", side.setting,
           "--config", str(cfg_file), "--inputs", str(inputs), "--workdir", str(scratch),
           "--out", str(out)]
    env = {**os.environ, **OFFLINE_ENV}
    if threads:
        cmd += ["--threads", str(threads)]
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise PreflineError(f"the {side.label} run of `prefline bench {bench.name}` failed "
                            f"(exit {proc.returncode}): {tail}")
    result = dict(json.loads(out.read_text()))
    result["process_s"] = round(time.perf_counter() - t0, 3)  # incl. imports and loading
    return result


def _partial_file(name: str) -> Path:
    """Each finished run is appended here, so an interrupted benchmark keeps what it measured."""
    from prefline.base.cache import kind_dir

    folder = kind_dir("bench")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / time.strftime(f"{name}-%Y%m%d-%H%M%S.jsonl")


def run(bench: Benchmark, cfg: Any, *, against: str | None = None, reps: int = 3,
        threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every side ``reps`` times, interleaved; return the JSON-ready comparison.

    ``threads`` sets OMP_NUM_THREADS and torch's thread count in every side (None: torch's
    default, one per core). ``progress`` prints one line per finished run on stderr.
    """
    if reps < 1:
        raise PreflineError(f"--reps must be at least 1, got {reps}", field="reps")
    if threads is not None and threads < 1:
        raise PreflineError(f"--threads must be at least 1, got {threads}", field="threads")
    contestants = sides(bench, against)
    plan = schedule(contestants, reps)
    partial = _partial_file(bench.name)
    watch = MachineWatch(threads)
    runs: dict[str, list[dict[str, Any]]] = {s.label: [] for s in contestants}
    with tempfile.TemporaryDirectory(prefix=f"prefline-bench-{bench.name}-") as tmp:
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        facts = bench.prepare(cfg, inputs) if bench.prepare else {}
        cfg_file = Path(tmp) / "config.json"
        cfg_file.write_text(json.dumps(config.to_dict(cfg)))
        for i, (rep, side) in enumerate(plan):
            result = _spawn(bench, side, cfg_file, inputs, Path(tmp) / f"run-{i}", threads)
            runs[side.label].append(result)
            with partial.open("a") as fh:
                fh.write(json.dumps({"rep": rep, "side": side.label, **result}) + "\n")
            if progress:
                print(f"bench {bench.name}: run {i + 1}/{len(plan)} ({side.label}, rep "
                      f"{rep + 1}/{reps}) took {result['process_s']:.1f} s", file=sys.stderr)
    machine = watch.finish()
    if bench.derive is not None:
        for group in runs.values():
            for r in group:
                r.update(bench.derive(r, machine))
    return _assemble(bench, cfg, facts, plan, runs, machine, threads)


def _assemble(bench: Benchmark, cfg: Any, facts: dict[str, Any], plan: list[tuple[int, Side]],
              runs: dict[str, list[dict[str, Any]]], machine: dict[str, Any],
              threads: int | None) -> dict[str, Any]:
    from prefline.registry import code_version

    labels = {side.label: side for _, side in plan}
    out: dict[str, Any] = {
        "benchmark": bench.name, "code_version": code_version(), "config": config.to_dict(cfg),
        "inputs": facts, "reps": max(r for r, _ in plan) + 1,
        "order": [side.label for _, side in plan], "threads": threads or "default",
        "machine": machine, "headline": bench.headline,
        "sides": {label: {"impl": s.impl, "setting": s.setting,
                          "metrics": summarise_runs(runs[label]), "runs": runs[label]}
                  for label, s in labels.items()},
    }
    out["comparisons"] = _comparisons(bench, out["sides"])
    out["targets"] = _targets(bench, out["sides"]["prefline"]["metrics"])
    return out


def _median(metrics: Mapping[str, Any], key: str) -> float | None:
    return metrics[key]["median"] if key in metrics else None


def _comparisons(bench: Benchmark, by_side: dict[str, Any]) -> dict[str, dict[str, float]]:
    """prefline's median over each peer side's median: throughput and peak RSS."""
    mine = by_side["prefline"]["metrics"]
    out: dict[str, dict[str, float]] = {}
    for label, side in by_side.items():
        if label == "prefline":
            continue
        row: dict[str, float] = {}
        for name, key in (("speedup", bench.headline), ("rss_ratio", "peak_rss_mb")):
            a, b = _median(mine, key), _median(side["metrics"], key)
            if a is not None and b:
                row[name] = round(a / b, 4)
        out[label] = row
    return out


def _targets(bench: Benchmark, metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, (op, value) in bench.targets.items():
        median = _median(metrics, key)
        if median is not None:  # e.g. no PostgreSQL target when PostgreSQL was not run
            out[key] = {"op": op, "value": value, "median": median, "met": OPS[op](median, value)}
    return out


# ----- child: one side, one run --------------------------------------------------------------

def side_main(bench: Benchmark, argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m prefline.bench.<name>``: one run of one side, JSON to --out."""
    p = argparse.ArgumentParser(prog=f"python -m {bench.module}",
                                description=f"One run of one side of `prefline bench {bench.name}` "
                                            "(started by prefline.bench.harness).")
    p.add_argument("--side", required=True, choices=["prefline", *bench.peers],
                   help="Which implementation runs.")
    p.add_argument("--setting", default="default", help="The peer's setting: default | fastest.")
    p.add_argument("--config", required=True, type=Path, help="The benchmark config as JSON.")
    p.add_argument("--inputs", required=True, type=Path, help="The shared workload folder.")
    p.add_argument("--workdir", required=True, type=Path, help="Scratch folder for this run.")
    p.add_argument("--out", required=True, type=Path, help="Where the result JSON goes.")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    args = p.parse_args(argv)
    allowed = bench.peers.get(args.side, ("default",))
    if args.setting not in allowed:
        p.error(f"--setting must be one of {', '.join(allowed)} for --side {args.side}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = config.build(bench.config, json.loads(args.config.read_text()))
    result = bench.run_side(args.side, args.setting, cfg, args.inputs, args.workdir)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if "torch" in sys.modules:
        result["torch_threads"] = sys.modules["torch"].get_num_threads()
    args.out.write_text(json.dumps(result))


# ----- shared inputs and text output ---------------------------------------------------------

def shared_data(name: str = HH_NAME) -> Path:
    """``shared/data/<name>`` next to the checkout or the working directory (or above them)."""
    here = Path(__file__).resolve()
    for root in (*here.parents, Path.cwd(), *Path.cwd().parents):
        path = root / "shared" / "data" / name
        if path.exists():
            return path
    raise PreflineError(f"cannot find ../shared/data/{name}; pass --data FILE", field="data")


def _cell(s: Mapping[str, float] | None) -> str:
    if s is None:
        return "-"
    return f"{s['median']:.4g} [{s['min']:.4g}, {s['max']:.4g}]"


def render(result: Mapping[str, Any]) -> str:
    """A plain-text table: each metric's median [min, max] per side, then ratios and targets."""
    m, labels = result["machine"], list(result["sides"])
    lines = [f"bench {result['benchmark']}: {result['reps']} interleaved reps of "
             f"{', '.join(labels)}  ({result['code_version']})",
             f"machine: {m['cores']} cores, {m['torch_threads']} torch threads, {m['cpu_model']}; "
             f"matmul peak bf16 {m['bf16_peak_tflops']} / fp32 {m['fp32_peak_tflops']} TFLOP/s; "
             f"load {m['load_avg_start'][0]} -> {m['load_avg_end'][0]}, others' CPU share "
             f"{m['others_cpu_share']:.0%}{' (BUSY)' if m['busy'] else ''}"]
    metrics = list(dict.fromkeys(k for s in result["sides"].values() for k in s["metrics"]))
    rows = [["metric", *labels]] + [
        [key, *(_cell(result["sides"][x]["metrics"].get(key)) for x in labels)] for key in metrics]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    for label, row in result["comparisons"].items():
        lines.append(f"prefline vs {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
    for key, t in result["targets"].items():
        lines.append(f"target {key} {t['op']} {t['value']:g}: {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)
