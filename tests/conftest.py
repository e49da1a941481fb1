"""Shared fixtures: an isolated user dir, SQLite and PostgreSQL stores, tiny models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HH_FILE = SHARED_DATA / "hh-rlhf-harmless-base-test.first800.jsonl.gz"
PG_URL = os.environ.get("PREFLINE_TEST_PG")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the user data dir at a temp dir so no test touches the real store.

    The model cache is shared across the session so converted weights are reused.
    """
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("PREFLINE_HOME", str(home))
    monkeypatch.delenv("PREFLINE_DB", raising=False)
    cache = os.environ.get("PREFLINE_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")
    monkeypatch.setenv("PREFLINE_CACHE", cache)
    return home


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def _fresh_pg_db() -> Iterator[str]:
    """A new empty PostgreSQL database for one test, dropped afterwards."""
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("PREFLINE_TEST_PG is not set: run the suite with `make test`")
        pytest.skip("PREFLINE_TEST_PG not set (make test starts PostgreSQL)")
    from prefline.store.testing import fresh_postgres

    with fresh_postgres(PG_URL) as url:
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _fresh_pg_db()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Runs the test once on SQLite and once on a real PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield from _fresh_pg_db()


@pytest.fixture
def hh_file() -> Path:
    if not HH_FILE.exists():
        pytest.skip("../shared/data is absent")
    return HH_FILE


@pytest.fixture(scope="session")
def tiny_causal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from prefline.models.tiny import save_tiny

    return save_tiny("causal", tmp_path_factory.mktemp("tiny_causal"))


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from prefline.models.tiny import save_tiny

    return save_tiny("encoder", tmp_path_factory.mktemp("tiny_encoder"))
