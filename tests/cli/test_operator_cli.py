"""Issue 16, operator paper cuts: ``db stats``, ``users disable|enable|reset-password``,
``keys list|revoke``, readable tables (no dict reprs, no Python ``True``), one report flag,
and no ``<bool>`` in any ``--help`` (SQLite and PostgreSQL where the store is touched)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer

from cli_runner import run_cli
from prefline.cli import app

DATA = ('{"prompt": "q", "chosen": "a", "rejected": "b"}\n'
        '{"prompt": "q", "response": "a", "label": "up"}\n'
        '{"prompt": "q2", "response": "r", "rating": 3}\n')


def _ok(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert not any(r in out for r in ("{'", "['", "True", "False", "None"))  # no Python reprs
    return out


def test_db_stats_counts_tables_kinds_and_sources(db_url: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "mine.jsonl"
    data.write_text(DATA, encoding="utf-8")
    _ok(["import", str(data), "--db", db_url], capsys)
    stats = json.loads(_ok(["db", "stats", "--db", db_url, "--json"], capsys))
    assert stats["tables"]["feedback"] == 3 and stats["tables"]["prompts"] == 2
    assert stats["feedback_by_kind"] == {"binary": 1, "pairwise": 1, "rating": 1}
    assert stats["feedback_by_source"] == {"mine.jsonl": 3}
    table = _ok(["db", "stats", "--db", db_url], capsys)
    lines = table.splitlines()
    assert lines[0].split() == ["table", "rows"]
    assert any(line.split() == ["feedback", "3"] for line in lines)
    assert any(line.split() == ["mine.jsonl", "3"] for line in lines)
    _ok(["snapshot", "create", "--name", "v1", "--db", db_url], capsys)
    shown = _ok(["snapshot", "show", "v1", "--db", db_url], capsys)
    assert "kinds=[pairwise, ranking, rating, binary]" in shown and "filters=(source=-" in shown


def test_users_disable_enable_and_reset_password(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from prefline.collect.auth import check_password
    from prefline.store.db import session_scope

    _ok(["users", "add", "ann", "--password", "first-password", "--db", db_url], capsys)
    _ok(["users", "disable", "ann", "--db", db_url], capsys)
    listed = _ok(["users", "list", "--db", db_url], capsys).splitlines()
    assert listed[0].split() == ["username", "role", "active"] and listed[1].split() == ["ann", "annotator", "no"]
    with session_scope(db_url) as s:
        assert check_password(s, "ann", "first-password") is None  # disabled: cannot log in
    _ok(["users", "enable", "ann", "--db", db_url], capsys)
    _ok(["users", "reset-password", "ann", "--password", "second-password", "--db", db_url], capsys)
    with session_scope(db_url) as s:
        assert check_password(s, "ann", "first-password") is None
        assert check_password(s, "ann", "second-password") is not None
    assert json.loads(_ok(["users", "list", "--json", "--db", db_url], capsys)) == [
        {"username": "ann", "role": "annotator", "active": True}]


def test_keys_list_never_shows_the_key_and_revoke_marks_it(db_url: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    key = _ok(["keys", "create", "svc", "--db", db_url], capsys).strip()
    table = _ok(["keys", "list", "--db", db_url], capsys)
    assert key not in table and key.split("_")[1] in table  # the public prefix only
    _ok(["keys", "revoke", "svc", "--db", db_url], capsys)
    (row,) = json.loads(_ok(["keys", "list", "--json", "--db", db_url], capsys))
    assert row["name"] == "svc" and row["revoked"] is True and "key" not in row


def test_audit_report_flag_and_its_deprecated_alias(sqlite_url: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(DATA, encoding="utf-8")
    _ok(["import", str(data), "--db", sqlite_url], capsys)
    code, out, err = run_cli(["audit", "--db", sqlite_url, "--out", str(tmp_path / "old.html")], capsys)
    assert code == 0 and (tmp_path / "old.html").exists()
    assert err.startswith("note: audit --out is deprecated; use --report\n")
    code, out, err = run_cli(["audit", "--help"], capsys)
    assert "--report" in out and "--out " not in out and "--out," not in out


def _commands(group: Any, prefix: list[str]) -> list[list[str]]:
    found = []
    for name, cmd in sorted(group.commands.items()):
        if hasattr(cmd, "commands"):  # a group (typer ships its own click)
            found += _commands(cmd, [*prefix, name])
        else:
            found.append([*prefix, name])
    return found


def test_no_help_shows_python_type_names(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands(typer.main.get_command(app), [])  # type: ignore[arg-type]
    assert ["db", "stats"] in commands and ["keys", "list"] in commands
    for command in commands:
        code, out, _ = run_cli([*command, "--help"], capsys)
        assert code == 0, command
        for bad in ("<bool>", "<str>", "<int>", "<float>"):
            assert bad not in out, (command, bad)
