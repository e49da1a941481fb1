"""Intransitive 3-cycles within a prompt."""

from __future__ import annotations

from prefline.audit.cycles import triangles


def test_triangles_finds_each_cycle_once() -> None:
    assert triangles([(1, 2), (2, 3), (3, 1)]) == [(1, 2, 3)]
    assert triangles([(2, 3), (3, 1), (1, 2), (1, 4)]) == [(1, 2, 3)]
    assert triangles([(1, 2), (2, 3), (1, 3)]) == []  # transitive


def test_consensus_and_per_annotator_cycles(store) -> None:  # type: ignore[no-untyped-def]
    """Prompt 1: one annotator says A>B, B>C, C>A (a cycle, for them and for consensus).
    Prompt 2: A>B, B>C, A>C is transitive. Prompt 3: the cyclic edge C>A is outvoted 2:1 by
    A>C, so consensus is transitive but annotator 'u' still contradicts themselves."""
    p1, (a, b, c) = store.prompt_with(3)
    store.pairwise("u", p1, a, b, "a")
    store.pairwise("u", p1, b, c, "a")
    store.pairwise("u", p1, c, a, "a")
    p2, (d, e, f) = store.prompt_with(3)
    store.pairwise("u", p2, d, e, "a")
    store.pairwise("u", p2, e, f, "a")
    store.pairwise("u", p2, d, f, "a")
    p3, (g, h, i) = store.prompt_with(3)
    store.pairwise("u", p3, g, h, "a")
    store.pairwise("u", p3, h, i, "a")
    store.pairwise("u", p3, i, g, "a")
    store.pairwise("v", p3, g, i, "a")
    store.pairwise("w", p3, i, g, "b")
    out = store.audit().cycles
    assert out["prompts_compared"] == 3
    assert out["prompts_with_cycles"] == 1 and out["cycles"] == 1
    assert out["examples"] == [{"prompt_id": p1, "cycle": [a, b, c]}]
    assert out["by_annotator"] == {"u": 2}
    assert store.audit().metrics["cycles"] == 1
