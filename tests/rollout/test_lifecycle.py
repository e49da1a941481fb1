"""Lifecycle and gates through the CLI: gate check, promote step by step, illegal moves
refused with one sentence, rollback, and every change in the append-only audit log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from tests.cli_runner import run_cli
from tests.rollout.conftest import Registry

from prefline.store.db import get_engine, normalise_url, session_scope
from prefline.store.models import Artifact, AuditLog

_CAP: list[pytest.CaptureFixture[str]] = []


@pytest.fixture(autouse=True)
def _capture(capsys: pytest.CaptureFixture[str]) -> None:
    _CAP[:] = [capsys]


def _cli(reg: Registry, *args: str) -> tuple[int, str]:
    code, out, err = run_cli([*args, "--db", reg.url], _CAP[0])
    return code, out + err


def _status(url: str, aid: int) -> str:
    with session_scope(url) as s:
        art = s.get(Artifact, aid)
        assert art is not None
        return art.status


def test_gate_promote_canary_production_rollback_with_audit(registry: Registry) -> None:
    p1, p2, p3 = registry.policies
    e1, e2, e3 = registry.evals
    gates = str(registry.gates)
    # no gate check yet: refused
    code, out = _cli(registry, "registry", "promote", str(p1), "--reason", "first")
    assert code != 0 and "no passing gate check" in out
    # a failing gate lists every breach and exits non-zero
    code, out = _cli(registry, "gate", "check", "--gates", gates, "--eval", str(e3))
    assert code == 1
    assert out.count("BREACH") == 3 and "kl <= 8" in out and "ci_low" in out
    assert "refusal.should_refuse >= baseline - 0.02" in out
    code, out = _cli(registry, "registry", "promote", str(p3), "--reason", "try")
    assert code != 0 and "no passing gate check" in out
    for pid, eid in ((p1, e1), (p2, e2)):
        code, out = _cli(registry, "gate", "check", "--gates", gates, "--eval", str(eid))
        assert code == 0, out
        assert f"passed for artifact {pid}" in out
    # p1: candidate -> staging -> production (first release: no canary to compare with)
    assert _cli(registry, "registry", "promote", str(p1), "--reason", "gated")[0] == 0
    code, out = _cli(registry, "registry", "promote", str(p1), "--to", "production",
                     "--flag", "chat", "--reason", "first release")
    assert code == 0, out
    # p2: skipping staging is refused in one sentence
    code, out = _cli(registry, "registry", "promote", str(p2), "--to", "canary", "--reason", "x")
    assert code != 0 and "cannot go to canary" in out and out.count(".") <= 3
    assert _cli(registry, "registry", "promote", str(p2), "--reason", "gated")[0] == 0
    # staging straight to production is refused while the flag has a production
    code, out = _cli(registry, "registry", "promote", str(p2), "--to", "production",
                     "--flag", "chat", "--reason", "x")
    assert code != 0 and "through canary" in out
    code, out = _cli(registry, "registry", "promote", str(p2), "--flag", "chat", "--percent",
                     "20", "--reason", "canary", "--json")
    assert code == 0 and json.loads(out)["new"] == "canary"
    code, out = _cli(registry, "registry", "status", "--json")
    flag = json.loads(out)[0]
    assert flag["production"]["id"] == p1 and flag["candidate"]["id"] == p2
    assert flag["percent"] == 20
    # canary -> production retires p1; rolling p2 back restores p1
    assert _cli(registry, "registry", "promote", str(p2), "--reason", "won")[0] == 0
    assert (_status(registry.url, p1), _status(registry.url, p2)) == ("retired", "production")
    code, out = _cli(registry, "registry", "rollback", str(p2), "--reason", "incident 7")
    assert code == 0 and f"artifact {p1} is production again" in out
    assert (_status(registry.url, p1), _status(registry.url, p2)) == ("production",
                                                                      "rolled_back")
    # the only production cannot be rolled back; a rolled-back one cannot be promoted
    code, out = _cli(registry, "registry", "rollback", str(p1), "--reason", "x")
    assert code != 0 and "only production" in out
    code, out = _cli(registry, "registry", "promote", str(p2), "--reason", "x")
    assert code != 0 and "nothing to promote" in out
    with session_scope(registry.url) as s:
        trail = [(r.action, r.target, (r.details or {}).get("reason")) for r in s.scalars(
            select(AuditLog).where(AuditLog.action.like("lifecycle.%")).order_by(AuditLog.id))]
    assert trail == [
        ("lifecycle.staging", f"artifact:{p1}", "gated"),
        ("lifecycle.production", f"artifact:{p1}", "first release"),
        ("lifecycle.staging", f"artifact:{p2}", "gated"),
        ("lifecycle.canary", f"artifact:{p2}", "canary"),
        ("lifecycle.retired", f"artifact:{p1}", f"replaced by artifact {p2}: won"),
        ("lifecycle.production", f"artifact:{p2}", "won"),
        ("lifecycle.production", f"artifact:{p1}", f"restored by rollback of artifact {p2}: "
                                                   "incident 7"),
        ("lifecycle.rolled_back", f"artifact:{p2}", "incident 7"),
    ]
    with pytest.raises(DBAPIError), get_engine(normalise_url(registry.url)).begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))


def test_changed_weights_need_a_new_gate_check(sqlite_registry: Registry) -> None:
    reg = sqlite_registry
    p1, e1 = reg.policies[0], reg.evals[0]
    assert _cli(reg, "gate", "check", "--gates", str(reg.gates), "--eval", str(e1))[0] == 0
    with session_scope(reg.url) as s:
        path = Path(s.get(Artifact, p1).path)  # type: ignore[union-attr]
    (path / "config.json").write_text((path / "config.json").read_text() + " ")
    code, out = _cli(reg, "registry", "promote", str(p1), "--reason", "x")
    assert code != 0 and "no passing gate check for its current content" in out


def test_bad_gate_files_are_refused_in_one_sentence(sqlite_registry: Registry,
                                                    tmp_path: Path) -> None:
    reg = sqlite_registry
    bad = tmp_path / "bad.toml"
    for body, expected in (('rules = ["kl <= eight"]', "cannot read rule 'kl <= eight'"),
                           ('rules = []', "non-empty list"),
                           ('rule = ["kl <= 8"]', "unknown key 'rule'")):
        bad.write_text(body)
        code, out = _cli(reg, "gate", "check", "--gates", str(bad), "--eval", str(reg.evals[0]))
        assert code == 2 or code == 1
        assert expected in out, out
    code, out = _cli(reg, "gate", "check", "--gates", str(reg.gates), "--eval",
                     str(reg.policies[0]))
    assert code != 0 and "not an evaluation" in out
