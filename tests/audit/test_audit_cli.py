"""``prefline audit`` end to end: JSON, HTML report, --fail-on exit codes, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prefline.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _biased_store(store, n: int = 20) -> None:  # type: ignore[no-untyped-def]
    """Two annotators who agree on every pair; the left-shown response always wins."""
    for i in range(n):
        pid, (a, b) = store.prompt_with(2, text=f"question number {i} about topic {i * 7}")
        for who in ("ann1", "ann2"):
            store.pairwise(who, pid, a, b, "a", shown_left_id=a)


def test_fail_on_exit_codes(any_store, capsys) -> None:  # type: ignore[no-untyped-def]
    _biased_store(any_store)
    db = any_store.url
    code, out, err = run(["audit", "--db", db, "--json", "--fail-on", "position_bias>0.6,duplicates>0"], capsys)
    assert code == 1
    assert "position_bias>0.6 (value 1)" in err and "duplicates" not in err.split("audit failed:")[1]
    result = json.loads(out)
    assert result["checks"]["breached"] == ["position_bias>0.6 (value 1)"]
    assert result["checks"]["passed"] == ["duplicates>0 (value 0)"]
    code, _, _ = run(["audit", "--db", db, "--json", "--fail-on", "position_bias>1,alpha<0.4"], capsys)
    assert code == 0
    code, _, err = run(["audit", "--db", db, "--fail-on", "position_bias>>1"], capsys)
    assert code == 2 and "cannot read rule" in err
    code, _, err = run(["audit", "--db", db, "--fail-on", "bogus>1"], capsys)
    assert code == 2 and "unknown metric 'bogus'" in err


def test_not_evaluable_rule_does_not_breach_but_is_reported(store, capsys) -> None:  # type: ignore[no-untyped-def]
    _biased_store(store, 3)
    code, _, err = run(["audit", "--db", store.url, "--fail-on", "leakage>0"], capsys)
    assert code == 0
    assert "not evaluated: leakage>0 (not defined: no snapshot selected" in err


def test_html_report_renders_with_plots(store, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _biased_store(store)
    report = tmp_path / "audit.html"
    code, out, _ = run(["audit", "--db", store.url, "--report", str(report)], capsys)
    assert code == 0 and "report written to" in out and "position_bias" in out
    html = report.read_text()
    images = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,([A-Za-z0-9+/=]{200,})">', html)
    assert len(images) >= 3  # labels, biases, agreement with consensus
    import base64

    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert "Krippendorff" in html and "position_bias" in html


def test_report_into_missing_folder_is_refused(store, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _biased_store(store, 2)
    code, _, err = run(["audit", "--db", store.url, "--report", str(tmp_path / "no" / "r.html")], capsys)
    assert code == 2 and "does not exist" in err


def test_empty_store_is_one_clear_sentence(any_store, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(["audit", "--db", any_store.url, "--json"], capsys)
    assert code == 2 and out == ""
    assert err.strip() == ("error: nothing to audit: the store has no feedback events "
                           "(add some with `prefline import` or the annotation UI)")


def test_missing_sqlite_file_is_not_created(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "absent.db"
    code, _, err = run(["audit", "--db", str(path)], capsys)
    assert code == 2 and "there is no store at" in err
    assert not path.exists()


def test_unknown_snapshot(store, capsys) -> None:  # type: ignore[no-untyped-def]
    _biased_store(store, 2)
    code, _, err = run(["audit", "--db", store.url, "--snapshot", "99"], capsys)
    assert code == 2 and "no snapshot matches '99'" in err


def test_single_annotator_snapshot_says_not_defined(any_store, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A snapshot labelled by one annotator: agreement is "not defined: only one annotator"
    in JSON and HTML, never NaN; the other checks still run."""
    pids = []
    for i in range(6):
        pid, (a, b) = any_store.prompt_with(2, text=f"prompt {i}")
        any_store.pairwise("solo", pid, a, b, "a" if i % 3 else "b")
        pids.append(pid)
    sid = any_store.snapshot({"train": pids[:4], "test": pids[4:]})
    report = tmp_path / "r.html"
    code, out, _ = run(["audit", "--db", any_store.url, "--snapshot", str(sid), "--json",
                        "--report", str(report), "--fail-on", "alpha<0.4"], capsys)
    assert code == 0
    assert "NaN" not in out and "nan" not in out.lower().replace("annotator", "")
    r = json.loads(out)
    pw = r["agreement"]["pairwise"]
    assert pw["alpha"] == pw["raw_agreement"] == "not defined: only one annotator"
    assert pw["kappa"]["mean"] == "not defined: only one annotator"
    assert pw["annotators_vs_consensus"][0]["agreement_with_consensus"] == "not defined: only one annotator"
    assert r["metrics"]["alpha"] == "not defined: only one annotator"
    assert r["checks"]["not_evaluated"] == [{"rule": "alpha<0.4", "reason": "not defined: only one annotator"}]
    assert r["metrics"]["leakage"] == 0 and r["scope"]["feedback"] == 6
    html = report.read_text()
    assert "not defined: only one annotator" in html and "nan" not in html.lower().replace("annotator", "")


def test_audit_of_a_real_snapshot_follows_its_recipe(store, capsys) -> None:  # type: ignore[no-untyped-def]
    """A snapshot built by ``create_snapshot`` from human feedback on tagged prompts: auditing
    it by name leaves out the AI judge and the untagged prompt, keeps the 3 pairs whose split
    votes the consensus dropped (their disagreement is the point of an audit), and its hash
    split leaks nothing."""
    from prefline.store.snapshots import Filters, create_snapshot

    for i in range(12):
        pid, (a, b) = store.prompt_with(2, text=f"a distinct question {i} " + "word " * i, tags=["x"])
        store.pairwise("h1", pid, a, b, "a")
        store.pairwise("h2", pid, a, b, "a" if i % 4 else "b")
        store.feedback([{"who": "judge", "who_kind": "ai_judge", "kind": "pairwise", "prompt_id": pid,
                         "response_a_id": a, "response_b_id": b, "choice": "b"}])
    pid, (a, b) = store.prompt_with(2, text="untagged")
    store.pairwise("h1", pid, a, b, "a")
    create_snapshot(store.url, "humans", filters=Filters(annotator_kind="human", tag="x"), test_fraction=0.3)
    store.pairwise("h1", pid, a, b, "b")  # after the snapshot: not part of it
    code, out, _ = run(["audit", "--db", store.url, "--snapshot", "humans", "--json"], capsys)
    assert code == 0
    r = json.loads(out)
    assert r["scope"]["feedback"] == 24 and r["scope"]["annotator_kinds"] == {"human": 2}
    assert r["scope"]["prompts"] == 12
    assert r["agreement"]["pairwise"]["raw_agreement"] == pytest.approx(9 / 12)
    assert r["metrics"]["leakage"] == 0 and sum(r["leakage"]["splits"].values()) == 9
    whole = run(["audit", "--db", store.url, "--json"], capsys)[1]
    assert json.loads(whole)["scope"]["feedback"] == 38


def test_help_lists_every_setting_with_its_doc(capsys) -> None:  # type: ignore[no-untyped-def]
    """Every AuditConfig field is an option (``report`` also answers to ``--out``), documented
    by its attribute docstring; the fail_on doc names every metric a rule may use."""
    from prefline.audit.checks import METRIC_HELP
    from prefline.audit.run import AuditConfig
    from prefline.base import config

    text = _help(["audit", "--help"], capsys)
    for s in config.settings(AuditConfig):
        assert f"--{s.name.replace('_', '-')}" in text, s.name
        assert s.doc and s.doc.split()[0] in text, s.name
    assert "--out" in text and "--json" in text and "--db" in text
    doc = config.field_docs(AuditConfig)["fail_on"]
    assert all(metric in doc for metric in METRIC_HELP)


def _help(argv: list[str], capsys) -> str:  # type: ignore[no-untyped-def]
    import os

    os.environ["COLUMNS"] = "250"  # one line per option, so flags are never wrapped
    try:
        code, out, _ = run(argv, capsys)
    finally:
        del os.environ["COLUMNS"]
    assert code == 0
    return out


def test_out_is_the_report_and_config_file_sets_rules(store, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """``--report`` writes the report (``--out``, its old name, is in tests/cli/test_operator_cli.py); rules and thresholds
    can come from a TOML file, and a bad threshold there names the file and the field."""
    _biased_store(store)
    cfg = tmp_path / "audit.toml"
    cfg.write_text('fail_on = ["position_bias>0.6"]\nnear_threshold = 0.9\n')
    report = tmp_path / "a.html"
    code, out, err = run(["audit", "--db", store.url, "--config", str(cfg), "--report", str(report),
                          "--json"], capsys)
    assert code == 1 and "audit failed: position_bias>0.6 (value 1)" in err
    r = json.loads(out)
    assert r["config"]["near_threshold"] == 0.9 and r["report"] == str(report)
    assert report.read_text().startswith("<!doctype html>")
    cfg.write_text("near_threshold = 1.5\n")
    code, _, err = run(["audit", "--db", store.url, "--config", str(cfg)], capsys)
    assert code == 2 and "audit.toml, field 'near_threshold': expected a number in (0, 1]" in err
