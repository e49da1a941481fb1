"""The admin commands: users, keys and campaigns from the shell."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prefline.cli import main
from prefline.collect import create_app


def test_users_keys_campaigns_from_the_cli(seed_store: Any, sqlite_url: str,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seed_store(sqlite_url)
    monkeypatch.setenv("PREFLINE_PASSWORD", "a long password")
    main(["users", "add", "dora", "--role", "annotator", "--db", sqlite_url])
    main(["users", "list", "--db", sqlite_url, "--json"])
    main(["keys", "create", "svc", "--rate", "5", "--db", sqlite_url, "--json"])
    main(["campaign", "create", "cli-c", "--kind", "rating", "--criteria", "helpful, safe",
          "--overlap", "3", "--tag", "qa", "--db", sqlite_url, "--json"])
    out = capsys.readouterr().out
    users, key, campaign = (json.loads(part) for part in _json_blocks(out))
    assert {"username": "dora", "role": "annotator", "active": True} in users
    assert campaign["items"] == 6 and campaign["labels_needed"] == 18  # 3 tagged prompts x 2
    with TestClient(create_app(sqlite_url)) as c:
        resp = c.get("/api/v1/whoami", headers={"X-API-Key": key["key"]})
        assert resp.json() == {"key": "svc"}
    with pytest.raises(SystemExit) as info:
        main(["campaign", "create", "cli-c", "--kind", "rating", "--criteria", "x",
              "--db", sqlite_url])
    assert info.value.code == 2 and "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["campaign", "create", "none", "--tag", "nope", "--db", sqlite_url])
    assert "no prompt with 2 responses matches" in capsys.readouterr().err


def _json_blocks(text: str) -> list[str]:
    """Split concatenated pretty-printed JSON documents."""
    blocks, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[{":
            if depth == 0:
                start = i
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                blocks.append(text[start:i + 1])
    return blocks
