"""Agreement metrics against published worked examples, and consensus/outlier behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from prefline.audit.agreement import (
    cohen_kappa,
    consensus,
    judge_vs_human,
    kappa_pairs,
    raw_and_alpha,
)
from prefline.audit.tables import LabelTable

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four
# observers, twelve units, values 1-5, '.' = missing. Published: α_nominal = 0.743,
# α_ordinal = 0.815, α_interval = 0.849.
K2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def _table(matrix: list[list[int | None]], level: str) -> LabelTable:
    item, ann, value = [], [], []
    for a, row in enumerate(matrix):
        for u, v in enumerate(row):
            if v is not None:
                item.append(u)
                ann.append(a)
                value.append(v - 1 if level == "nominal" else v)
    keys = np.stack([np.arange(len(matrix[0]))] * 2, axis=1)
    cats = [str(c) for c in range(1, 6)] if level == "nominal" else None
    return LabelTable("t", level, np.array(item), np.array(ann), np.array(value, float), keys, cats)


def test_krippendorff_2011_nominal_example_with_missing_data() -> None:
    """Krippendorff (2011), sec. C: nominal α = 0.743 on data with missing values."""
    out = raw_and_alpha(_table(K2011, "nominal"))
    assert out["alpha"] == pytest.approx(0.743, abs=5e-4)
    assert out["items_with_2plus"] == 11  # unit 12 has a single value and is not pairable


def test_krippendorff_2011_interval_and_ordinal() -> None:
    """Same paper, same data: α_interval = 0.849 and α_ordinal = 0.815."""
    out = raw_and_alpha(_table(K2011, "interval"))
    assert out["alpha"] == pytest.approx(0.849, abs=5e-4)
    assert out["alpha_ordinal"] == pytest.approx(0.815, abs=5e-4)


def test_raw_agreement_counts_agreeing_pairs_within_items() -> None:
    # Item 0: labels 1,1,2 → 2 agreeing ordered pairs of 6; item 1: 3,3 → 2 of 2. (2+2)/(6+2).
    out = raw_and_alpha(_table([[1, 3], [1, 3], [2, None]], "nominal"))
    assert out["raw_agreement"] == pytest.approx(0.5)


def test_cohen_kappa_cohen_1960_example() -> None:
    """Cohen (1960), "A coefficient of agreement for nominal scales", Educ. Psychol. Meas.
    20(1), Table 1: two judges, 200 cases, three categories; p_o = .70, p_c = .41 and
    κ = .492. κ depends only on the diagonal and the margins (rows .60/.30/.10, columns
    .50/.30/.20), which these counts reproduce exactly."""
    table = np.array([[88, 14, 18], [10, 40, 10], [2, 6, 12]])
    assert table.sum() == 200 and np.trace(table) == 140
    assert cohen_kappa(table) == pytest.approx(0.492, abs=5e-4)


def test_cohen_kappa_two_by_two_textbook_example() -> None:
    """The standard 2×2 worked example (e.g. Wikipedia "Cohen's kappa", 50 proposals):
    yes/yes 20, yes/no 5, no/yes 10, no/no 15 → p_o = 0.7, p_e = 0.5, κ = 0.4."""
    assert cohen_kappa(np.array([[20, 5], [10, 15]])) == pytest.approx(0.4, abs=1e-9)


def test_kappa_pairs_from_labels_matches_confusion_matrix() -> None:
    # The 2x2 example as 50 items labelled by two annotators, plus a third with too few items.
    cells = [(0, 0)] * 20 + [(0, 1)] * 5 + [(1, 0)] * 10 + [(1, 1)] * 15
    item = np.repeat(np.arange(50), 2)
    ann = np.tile([0, 1], 50)
    value = np.array([v for pair in cells for v in pair], float)
    item, ann, value = np.append(item, [0, 1]), np.append(ann, [2, 2]), np.append(value, [0, 0])
    t = LabelTable("t", "nominal", item, ann, value, np.stack([np.arange(50)] * 2, 1), ["y", "n"])
    out = kappa_pairs(t, ["r1", "r2", "r3"], min_overlap=10)
    assert [(p["a"], p["b"], p["n"]) for p in out["pairs"]] == [("r1", "r2", 50)]
    assert out["pairs"][0]["kappa"] == pytest.approx(0.4)


def _nominal(rows: list[tuple[int, int, int]]) -> LabelTable:
    item, ann, value = (np.array(c) for c in zip(*rows, strict=True))
    n = int(item.max()) + 1
    return LabelTable("t", "nominal", item, ann, value.astype(float),
                      np.stack([np.arange(n)] * 2, 1), ["first", "second"])


def test_consensus_flags_the_contrarian_annotator() -> None:
    # Four annotators agree on 40 items; annotator 4 always picks the other label.
    rows = [(i, a, i % 2) for i in range(40) for a in range(4)] + [(i, 4, 1 - i % 2) for i in range(40)]
    out = {r["annotator"]: r for r in consensus(_nominal(rows), [f"a{i}" for i in range(5)], ["human"] * 5)}
    assert out["a4"]["agreement_with_consensus"] == 0.0 and out["a4"]["outlier"]
    assert all(out[f"a{i}"]["agreement_with_consensus"] == 1.0 and not out[f"a{i}"]["outlier"]
               for i in range(4))


def test_judge_vs_human_majority() -> None:
    # Items 0-9: humans h0,h1,h2 vote 2:1 for label 0; the judge (3) says 0 on 0-7, 1 on 8-9.
    rows = [(i, a, 0) for i in range(10) for a in (0, 1)] + [(i, 2, 1) for i in range(10)]
    rows += [(i, 3, 0 if i < 8 else 1) for i in range(10)]
    out = judge_vs_human(_nominal(rows), ["h0", "h1", "h2", "j"], ["human"] * 3 + ["ai_judge"])
    assert out["agreement"] == pytest.approx(0.8)
    assert out["judges"][0]["judge"] == "j" and out["judges"][0]["n"] == 10


def test_alpha_from_store_ratings_matches_published_value(any_store) -> None:  # type: ignore[no-untyped-def]
    """End to end through the store (SQLite and PostgreSQL): the 2011 example as ratings of
    twelve responses by four annotators gives α_interval = 0.849, α_ordinal = 0.815."""
    pid, rids = any_store.prompt_with(12)
    any_store.feedback([{"who": f"obs{a}", "kind": "rating", "prompt_id": pid, "response_id": rids[u],
                         "payload": {"scores": {"quality": v}}}
                        for a, row in enumerate(K2011) for u, v in enumerate(row) if v is not None])
    result = any_store.audit()
    q = result.agreement["rating:quality"]
    assert q["alpha"] == pytest.approx(0.849, abs=5e-4)
    assert q["alpha_ordinal"] == pytest.approx(0.815, abs=5e-4)
    assert result.metrics["alpha.rating:quality"] == q["alpha"]


def test_pairwise_agreement_ignores_which_side_was_called_a(store) -> None:  # type: ignore[no-untyped-def]
    # Both annotators prefer response r0; one stores it as (a=r0), the other as (a=r1, choice b).
    pid, (r0, r1) = store.prompt_with(2)
    for _ in range(3):
        p, (x, y) = store.prompt_with(2)
        store.pairwise("ann1", p, x, y, "a")
        store.pairwise("ann2", p, y, x, "b")
    store.pairwise("ann1", pid, r0, r1, "a")
    store.pairwise("ann2", pid, r1, r0, "a")  # the one disagreement
    out = store.audit().agreement["pairwise"]
    assert out["items_with_2plus"] == 4
    assert out["raw_agreement"] == pytest.approx(0.75)


def test_rankings_binary_and_judges_from_the_store(store) -> None:  # type: ignore[no-untyped-def]
    """Rankings become the ordered pairs they imply; thumbs are a two-category question; an
    AI judge is compared with the human majority on the pairs both labelled."""
    pid, (a, b, c) = store.prompt_with(3)
    store.feedback([{"who": "h1", "kind": "ranking", "prompt_id": pid, "payload": {"order": [a, b, c]}},
                    {"who": "h2", "kind": "ranking", "prompt_id": pid, "payload": {"order": [a, c, b]}}])
    store.feedback([{"who": who, "kind": "binary", "prompt_id": pid, "response_id": r,
                     "payload": {"value": up}} for who, r, up in
                    [("h1", a, True), ("h2", a, True), ("h1", b, False), ("h2", b, True)]])
    for i in range(4):
        p, (x, y) = store.prompt_with(2)
        store.pairwise("h1", p, x, y, "a")
        store.pairwise("h2", p, x, y, "a")
        store.feedback([{"who": "judge", "who_kind": "ai_judge", "kind": "pairwise", "prompt_id": p,
                         "response_a_id": x, "response_b_id": y, "choice": "a" if i else "b"}])
    r = store.audit()
    ranking = r.agreement["ranking"]
    assert (ranking["items"], ranking["items_with_2plus"]) == (3, 3)
    assert ranking["raw_agreement"] == pytest.approx(2 / 3)  # a>b, a>c agree; b vs c differs
    assert r.agreement["binary"]["raw_agreement"] == pytest.approx(0.5)
    jv = r.judge_vs_human["pairwise"]
    assert jv["judges"] == [{"judge": "judge", "n": 4, "agreement": 0.75, "kappa": 0.0}]
    assert r.metrics["judge_agreement"] == 0.75
    assert r.scope.annotator_kinds == {"ai_judge": 1, "human": 2}


def test_admin_page_agreement_is_the_audits() -> None:
    """The annotation admin page measures campaign agreement with the audit's raw_and_alpha:
    ratings per criterion (missing scores skipped), rankings on the best response, overall
    pooled by annotator pairs; an annotator's repeated label counts once (their latest)."""
    from prefline.collect.admin import raw_agreement

    def rating(item: int, who: str, **scores: int) -> dict:  # type: ignore[type-arg]
        return {"item": item, "annotator": who, "kind": "rating", "choice": None,
                "payload": {"scores": scores}}

    labels = [rating(1, "alice", help=4, tone=2), rating(1, "bob", help=4, tone=3),
              rating(2, "alice", help=5), rating(2, "bob", help=3), rating(3, "alice", help=1)]
    out = raw_agreement(labels, ["help", "tone"])
    assert out["per_criterion"] == {"help": 0.5, "tone": 0.0}
    assert out["pairs"] == 3 and out["overall"] == pytest.approx(1 / 3)

    def ranking(item: int, who: str, order: list[int]) -> dict:  # type: ignore[type-arg]
        return {"item": item, "annotator": who, "kind": "ranking", "choice": None,
                "payload": {"order": order}}

    out = raw_agreement([ranking(1, "a", [7, 8, 9]), ranking(1, "b", [7, 9, 8]),
                         ranking(2, "a", [2, 1]), ranking(2, "b", [1, 2]),
                         ranking(2, "b", [2, 1])])  # b changed their mind: now agrees
    assert out == {"overall": 1.0, "pairs": 2, "per_criterion": {"label": 1.0}}
    single = raw_agreement([ranking(1, "a", [1, 2])])
    assert single == {"overall": None, "pairs": 0, "per_criterion": {"label": None}}
