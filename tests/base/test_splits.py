"""The one prompt-grouped splitter: grouped, deterministic, and the snapshot hash is stable."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from prefline.base.splits import carve, split_of


@dataclass(frozen=True)
class Ex:
    prompt: str
    prompt_key: str = ""


def test_split_of_is_the_pre_refactor_rule() -> None:
    # The snapshot split must not change: snapshot content hashes (and the demo) depend on it.
    for key in ("a", "b", "prompt-17"):
        h = hashlib.sha256(f"3:{key}".encode()).hexdigest()
        expected = "test" if int(h[:15], 16) / 16**15 < 0.3 else "train"
        assert split_of(key, 0.3, 3) == expected


def test_carve_groups_by_prompt_and_is_deterministic() -> None:
    examples = [Ex(f"p{i % 40}") for i in range(400)]
    rest, val = carve(examples, 0.25, seed=1)
    assert len(rest) + len(val) == 400
    assert not {e.prompt for e in rest} & {e.prompt for e in val}
    assert 0.1 < len({e.prompt for e in val}) / 40 < 0.45
    assert carve(examples, 0.25, seed=1) == (rest, val)
    assert carve(examples, 0.25, seed=2) != (rest, val)
    assert carve(examples, 0.0, seed=1) == (examples, [])
