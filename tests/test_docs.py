"""The docs' examples run: docs/python-api.md is a doctest of the whole loop from Python."""

from __future__ import annotations

import doctest
from pathlib import Path

DOCS = Path(__file__).parents[1] / "docs"


def test_python_api_examples_run() -> None:
    result = doctest.testfile(str(DOCS / "python-api.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                              raise_on_error=False, verbose=False)
    assert result.attempted > 20
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
