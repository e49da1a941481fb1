"""Position and length bias, tie rates, label distributions and fast labels on built data."""

from __future__ import annotations

import pytest

from prefline.audit.stats import wilson_interval


def test_wilson_interval_reference_values() -> None:
    """Wilson 95% interval for 7/10: (0.3968, 0.8922) — Brown, Cai & DasGupta (2001) /
    Newcombe (1998) give 0.3968–0.8922 for x=7, n=10 (method 3, without continuity)."""
    lo, hi = wilson_interval(7, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.3968, 0.8922)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == pytest.approx(1.0)


def test_position_and_length_bias(any_store) -> None:  # type: ignore[no-untyped-def]
    """30 pairs: the left-shown response wins 24 (0.8); the longer one wins 18 of the 30.
    Ties and a both_bad are excluded from both shares but counted in the rates."""
    rows = []
    for i in range(30):
        pid, (short, long) = any_store.prompt_with(2, lengths=[10, 50])
        left = short if i % 2 else long
        right = long if left == short else short
        winner = left if i < 24 else right
        rows.append({"who": "h", "kind": "pairwise", "prompt_id": pid, "response_a_id": short,
                     "response_b_id": long, "choice": "a" if winner == short else "b",
                     "shown_left_id": left})
    pid, (x, y) = any_store.prompt_with(2)
    rows += [{"who": "h", "kind": "pairwise", "prompt_id": pid, "response_a_id": x,
              "response_b_id": y, "choice": c, "shown_left_id": x} for c in ("tie", "tie", "both_bad")]
    any_store.feedback(rows)
    r = any_store.audit()
    pos = r.position_bias
    assert (pos["n"], pos["count"], pos["share"]) == (30, 24, 0.8)
    lo, hi = wilson_interval(24, 30)
    assert pos["ci95"] == [pytest.approx(lo, abs=1e-6), pytest.approx(hi, abs=1e-6)]
    assert pos["p_value"] < 0.01
    # Left is the long response on even i. The left side wins for i < 24 (long wins on the
    # 12 even i) and the right side after (long wins on the 3 odd i): 15 of 30.
    assert r.choices["counts"] == {"a": 15, "b": 15, "tie": 2, "both_bad": 1}
    assert r.length_bias["longer_wins"]["count"] == 15
    assert r.length_bias["chosen_longer"]["share"] == pytest.approx(0.5)
    assert r.metrics["tie_rate"] == pytest.approx(2 / 33, abs=1e-6)
    assert r.metrics["both_bad_rate"] == pytest.approx(1 / 33, abs=1e-6)


def test_longer_wins_excludes_equal_lengths(store) -> None:  # type: ignore[no-untyped-def]
    for i in range(4):
        pid, (a, b) = store.prompt_with(2, lengths=[20, 20 if i < 2 else 5])
        store.pairwise("h", pid, a, b, "a")
    lb = store.audit().length_bias
    assert (lb["longer_wins"]["n"], lb["longer_wins"]["count"]) == (2, 2)
    assert (lb["chosen_longer"]["n"], lb["chosen_longer"]["count"]) == (4, 2)


def test_fast_annotations_absolute_and_relative(store) -> None:  # type: ignore[no-untyped-def]
    """Annotator 'slow' usually takes 60 s: 10 s is under a quarter of their median and is
    flagged though above the 2 s floor; 1.5 s labels are flagged for anyone; judges never."""
    rows = []
    pid, (a, b) = store.prompt_with(2)
    base = {"kind": "pairwise", "prompt_id": pid, "response_a_id": a, "response_b_id": b, "choice": "a"}
    rows += [{**base, "who": "slow", "time_spent_ms": 60_000} for _ in range(12)]
    rows += [{**base, "who": "slow", "time_spent_ms": 10_000}]
    rows += [{**base, "who": "quick", "time_spent_ms": t} for t in (1_500, 5_000, 6_000)]
    rows += [{**base, "who": "judge", "who_kind": "ai_judge", "time_spent_ms": 5}]
    store.feedback(rows)
    fast = store.audit().fast_annotations
    assert fast["n_timed"] == 16 and fast["count"] == 2
    assert fast["by_annotator"]["slow"]["fast"] == 1 and fast["by_annotator"]["slow"]["median_ms"] == 60_000
    assert fast["by_annotator"]["quick"]["fast"] == 1
    assert "judge" not in fast["by_annotator"]


def test_label_distribution_per_tag_and_annotator(store) -> None:  # type: ignore[no-untyped-def]
    p1, (a, b) = store.prompt_with(2, tags=["code"])
    p2, (c, d) = store.prompt_with(2, tags=["chat", "code"])
    p3, (e, f) = store.prompt_with(2)
    store.pairwise("x", p1, a, b, "a")
    store.pairwise("x", p2, c, d, "tie")
    store.pairwise("y", p3, e, f, "b")
    store.feedback([{"who": "y", "kind": "binary", "prompt_id": p3, "response_id": e,
                     "payload": {"value": False}}])
    labels = store.audit().labels
    assert labels["by_tag"]["code"] == {"a": 1, "tie": 1}
    assert labels["by_tag"]["chat"] == {"tie": 1}
    assert labels["by_tag"]["(untagged)"] == {"b": 1, "down": 1}
    assert labels["by_annotator"]["y"] == {"b": 1, "down": 1}
