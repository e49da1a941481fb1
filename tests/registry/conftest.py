"""Registry fixtures: a store holding one snapshot, and the CLI as a function."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cli_runner import run_cli
from prefline.store.db import session_scope, upgrade
from prefline.store.models import Snapshot

CliRun = Callable[..., tuple[int, str, str]]
MakeSnapshot = Callable[[str], int]


def _add_snapshot(url: str) -> int:
    upgrade(url)
    with session_scope(url) as s:
        snap = Snapshot(name="s1", content_hash="ab" * 32, recipe={}, stats={})
        s.add(snap)
        s.flush()
        return int(snap.id)


@pytest.fixture
def make_snapshot() -> MakeSnapshot:
    """``make_snapshot(url)`` → the id of a new snapshot named s1 with hash ``ab…``."""
    return _add_snapshot


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRun:
    """``cli("registry", "show", "1")`` → (exit code, stdout, stderr)."""
    def run(*args: str) -> tuple[int, str, str]:
        return run_cli(list(args), capsys)

    return run
