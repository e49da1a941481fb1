"""Fixtures for the PII tests: one Presidio detector per session (building is cheap, but
importing Presidio takes seconds) and a search of a whole store for a string."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from prefline.pii.config import RedactionConfig
from prefline.pii.redactor import Detector, Redactor
from prefline.store.db import open_store

ACCOUNTS = {"ACCOUNT_ID": "ACC-[0-9]{8}"}
"""The custom pattern the tests and the labelled test set use (internal account ids)."""


@pytest.fixture(scope="session")
def detector() -> Detector:
    from prefline.pii.presidio import detector as build

    return build(RedactionConfig(pii_patterns=ACCOUNTS))


def redactor(detect: Detector, salt: bytes | None = b"test-salt", **settings: object) -> Redactor:
    return Redactor(RedactionConfig(pii_patterns=ACCOUNTS, **settings),  # type: ignore[arg-type]
                    detect, salt)


def store_text(url: str) -> str:
    """Every value of every row of every table, as one string (to search for leaks)."""
    engine = open_store(url)
    parts = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
            parts += [repr(tuple(r)) for r in rows]
    engine.dispose()
    return "\n".join(parts)
