"""Run prefline's benchmarks from a checkout: ``python bench/run.py NAME|all [flags...]``."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS: dict[str, list[str]] = {
    "ingest": ["bench", "ingest"],
    "ingest-http": ["bench", "ingest", "--http"],
    "audit": ["bench", "audit"],
    "generate": ["bench", "generate"],
    "reward": ["bench", "reward", "--against", "trl"],
    "dpo": ["bench", "dpo", "--against", "trl"],
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {*BENCHMARKS, "all"}:
        print(f"usage: bench/run.py {{{'|'.join(BENCHMARKS)}|all}} [flags...]", file=sys.stderr)
        return 2
    names = list(BENCHMARKS) if argv[0] == "all" else [argv[0]]
    status = 0
    for name in names:
        cmd = [sys.executable, "-m", "prefline", *BENCHMARKS[name], *argv[1:]]
        print("$", " ".join(cmd[2:]), flush=True)
        status = max(status, subprocess.call(cmd))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
