"""Run prefline's benchmarks from a checkout: ``python bench/run.py NAME|all [flags...]``.

Each name is a ``prefline bench ...`` command (the code is in ``src/prefline/bench/``, on one
harness); extra flags are passed through, e.g. ``python bench/run.py dpo --reps 5 --json``.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS: dict[str, list[str]] = {
    "ingest": ["bench", "ingest"],
    "collect": ["bench", "collect"],
    "audit": ["bench", "audit"],
    "generate": ["bench", "generate"],
    "reward": ["bench", "reward", "--against", "trl"],
    "dpo": ["bench", "dpo", "--against", "trl"],
    "dpo-lora": ["bench", "dpo", "--against", "trl", "--lora"],
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {*BENCHMARKS, "all"}:
        print(f"usage: bench/run.py {{{'|'.join(BENCHMARKS)}|all}} [flags...]", file=sys.stderr)
        return 2
    names = list(BENCHMARKS) if argv[0] == "all" else [argv[0]]
    status = 0
    for name in names:
        cmd = [sys.executable, "-m", "prefline", *BENCHMARKS[name], *argv[1:]]
        print("$ prefline", " ".join(cmd[3:]), flush=True)
        status = max(status, subprocess.call(cmd))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
