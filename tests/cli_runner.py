"""The command line as a function, for tests: ``run_cli(args, capsys) -> (code, out, err)``."""

from __future__ import annotations

import pytest

from prefline.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``prefline ARGS`` in this process; the exit code, stdout and stderr."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
