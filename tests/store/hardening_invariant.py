"""The store invariant of issue 16: after any accepted input, the store stays usable.

Shared by the hardening and fuzzing tests: one accepted event with a bad character once made
every snapshot, audit and export of the whole store crash.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefline.audit.run import AuditConfig
from prefline.audit.run import run as audit_run
from prefline.store.context import Context, Store
from prefline.store.export_stage import ExportConfig
from prefline.store.export_stage import run as export_run
from prefline.store.snapshots import create_snapshot


def assert_store_usable(url: str, out: Path, *, export: bool = True) -> None:
    """Snapshot create, audit (JSON and HTML report) and export all succeed on ``url``.

    ``export=False`` when the store may hold nothing a DPO export can use (the snapshot,
    audit and report must still work)."""
    snap = create_snapshot(url, test_fraction=0.0)
    ctx = Context(store=Store.open(url))
    out.mkdir(parents=True, exist_ok=True)
    report = out / "audit.html"
    result = audit_run(AuditConfig(report=report), ctx)
    json.dumps(result.to_json(), ensure_ascii=False).encode("utf-8")
    report.read_text(encoding="utf-8")
    if export:
        export_run(ExportConfig(out=str(out / "dpo.jsonl"), task="dpo", snapshot=str(snap.id)),
                   ctx)
        (out / "dpo.jsonl").read_text(encoding="utf-8")
