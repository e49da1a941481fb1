"""``key=value`` / ``--key value`` overrides shared by the train commands."""

from __future__ import annotations

from prefline.cli.common import parse_overrides


def test_values_keep_their_dashes_and_keys_use_underscores() -> None:
    got = parse_overrides(["lr=1e-3", "--batch-size", "4", "max-steps=-1", "--resume",
                           "--warmup_ratio", "0.1"])
    assert got == {"lr": "1e-3", "batch_size": "4", "max_steps": "-1", "resume": "true",
                   "warmup_ratio": "0.1"}
