"""k-anonymity helper: which segment groups a report may show, and the suppression note."""

from __future__ import annotations

import pytest

from prefline.base.errors import PreflineError
from prefline.base.privacy import DEFAULT_MIN_GROUP_SIZE, k_anonymous, suppressed_note


def test_k_anonymous_keeps_groups_with_at_least_k_records() -> None:
    counts = {"concise": 12, "detailed": 5, "legal": 4, "empty": 0}
    assert k_anonymous(counts, 5) == {"concise", "detailed"}
    assert k_anonymous(counts, 1) == {"concise", "detailed", "legal"}
    assert k_anonymous(counts, 13) == set()
    assert k_anonymous({}, 5) == set()
    assert DEFAULT_MIN_GROUP_SIZE == 5


def test_suppressed_note_counts_hidden_groups() -> None:
    assert suppressed_note({"a": 9, "b": 2, "c": 1}, 5) == "2 groups suppressed (n < 5)"
    assert suppressed_note({"a": 9, "b": 2}, 5) == "1 group suppressed (n < 5)"
    assert suppressed_note({"a": 9}, 5) is None


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "5"])
def test_bad_k_is_a_clear_error(k: object) -> None:
    with pytest.raises(PreflineError, match="positive integer"):
        k_anonymous({"a": 1}, k)  # type: ignore[arg-type]
