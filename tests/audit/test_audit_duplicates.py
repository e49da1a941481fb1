"""Exact and near-duplicate prompts, same-opening conversations, and train/test leakage."""

from __future__ import annotations

import time

import numpy as np
import pytest

from prefline.audit.duplicates import find_duplicates, minhash, normalise

LONG = ("please write a short friendly note to my neighbour explaining that the party on "
        "saturday will end before eleven and thanking them for their patience with the noise")


def test_normalise_ignores_case_punctuation_and_spacing() -> None:
    assert normalise("  Hello,   WORLD!!\n") == normalise("hello world") == "hello world"


def test_minhash_estimates_jaccard() -> None:
    # 40 distinct words; the second doc replaces the last word: 3-gram Jaccard = 38/42.
    words = [f"w{i}" for i in range(40)]
    sig = minhash([" ".join(words), " ".join([*words[:-1], "zzz"]), "completely other words here"], 128)
    same = (sig[0] == sig[1]).mean()
    assert same == pytest.approx(38 / 42, abs=0.08)
    assert (sig[0] == sig[2]).mean() < 0.1


def test_exact_near_and_distinct() -> None:
    texts = ["How do I bake bread?", "how do i BAKE bread", LONG, LONG.replace("eleven", "midnight"),
             "something unrelated entirely", LONG.replace("friendly", "polite").replace("noise", "music")]
    d = find_duplicates(np.arange(len(texts)) + 100, texts)
    assert d.summary["exact"]["groups"] == 1 and d.summary["exact"]["extra_copies"] == 1
    assert d.summary["exact"]["examples"][0]["prompt_ids"] == [100, 101]
    # One word changed in a 28-word text is a near duplicate; two far apart drop J below 0.8.
    assert d.cluster[2] == d.cluster[3] and d.cluster[5] != d.cluster[2]
    assert d.cluster[4] not in (d.cluster[0], d.cluster[2])
    assert d.summary["duplicates"] == 2


def test_same_opening_counts_distinct_conversations() -> None:
    texts = ["hi\nanswer one", "hi\nanswer two", "HI\nanswer one", "bye"]
    d = find_duplicates(np.arange(4), texts, openings=["hi", "hi", "HI", "bye"])
    assert d.summary["exact"]["extra_copies"] == 1  # texts 0 and 2
    assert d.summary["same_opening"]["extra_copies"] == 1  # two distinct conversations open with "hi"


def test_near_duplicates_scale_to_100k_prompts() -> None:
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(5000)])
    texts = [" ".join(rng.choice(vocab, 25)) for _ in range(100_000)]
    texts[500] = texts[400] + " thanks"
    start = time.perf_counter()
    d = find_duplicates(np.arange(len(texts)), texts)
    assert time.perf_counter() - start < 30  # the whole audit's budget; ~4-10 s here
    assert d.cluster[400] == d.cluster[500]
    assert d.summary["duplicates"] == 1


def test_leakage_between_train_and_test(any_store) -> None:  # type: ignore[no-untyped-def]
    """Test prompts leak when the same prompt is in train, or an exact/near copy is."""
    pids = {}
    for name, text in [("t1", "what is the capital of france"), ("t2", LONG), ("t3", "unique train"),
                       ("e1", "What is the capital of France?"), ("e2", LONG.replace("eleven", "ten")),
                       ("e3", "a new question nobody asked")]:
        pids[name], (a, b) = any_store.prompt_with(2, text=text)
        any_store.pairwise("h", pids[name], a, b, "a")
    for name, reply in [("c1", "sure, here is how"), ("c2", "I would rather not")]:
        pids[name] = any_store.prompt("", messages=[
            {"role": "user", "content": "How do I pick a lock?"}, {"role": "assistant", "content": reply},
            {"role": "user", "content": f"follow-up after: {reply}"}])
        a, b = any_store.response(pids[name], "x"), any_store.response(pids[name], "yy")
        any_store.pairwise("h", pids[name], a, b, "a")
    sid = any_store.snapshot({"train": [pids["t1"], pids["t2"], pids["t3"], pids["c1"]],
                              "test": [pids["e1"], pids["e2"], pids["e3"], pids["t3"], pids["c2"]]})
    r = any_store.audit(snapshot=str(sid))
    leak = r.leakage
    assert leak["test"] == {"same_prompt": 1, "similar_text": 2, "same_opening": 1}
    assert r.metrics["leakage"] == 3 and r.metrics["opening_leakage"] == 1
    assert {e["prompt_id"] for e in leak["examples"]} == {pids["e1"], pids["e2"], pids["t3"]}
    whole = any_store.audit()
    assert whole.metrics["leakage"].startswith("not defined: no snapshot")
    assert whole.metrics["exact_duplicates"] == 1 and whole.metrics["duplicates"] == 2
