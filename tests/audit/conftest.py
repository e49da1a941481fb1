"""A small builder that writes audit test data straight into a real store with the ORM."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest

from prefline.audit.run import AuditConfig, AuditResult, run
from prefline.base.progress import Reporter
from prefline.store.context import Context, Store
from prefline.store.db import open_store, session_scope
from prefline.store.models import Annotator, Feedback, Prompt, Response, Snapshot, SnapshotItem

_counter = itertools.count()


class StoreBuilder:
    """Adds rows one call at a time; every call commits, so ids come back immediately."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_store(url)
        self.annotators: dict[str, int] = {}

    def _add(self, obj: Any) -> int:
        with session_scope(self.engine) as s:
            s.add(obj)
            s.flush()
            return int(obj.id)

    def annotator(self, name: str, kind: str = "human") -> int:
        if name not in self.annotators:
            self.annotators[name] = self._add(Annotator(name=name, kind=kind))
        return self.annotators[name]

    def prompt(self, text: str, tags: Sequence[str] = (), messages: list[Any] | None = None) -> int:
        return self._add(Prompt(content_hash=f"p{next(_counter)}", text=None if messages else text,
                                messages=messages, tags=list(tags)))

    def response(self, prompt_id: int, text: str) -> int:
        return self._add(Response(content_hash=f"r{next(_counter)}", prompt_id=prompt_id, text=text))

    def prompt_with(self, n: int, lengths: Sequence[int] | None = None, text: str | None = None,
                    tags: Sequence[str] = ()) -> tuple[int, list[int]]:
        pid = self.prompt(text or f"prompt {next(_counter)}", tags)
        lengths = lengths or [10 + i for i in range(n)]
        return pid, [self.response(pid, "x" * length) for length in lengths]

    def feedback(self, rows: list[dict[str, Any]]) -> None:
        """Bulk-add feedback; each row names its annotator by ``who`` (created as human)."""
        with session_scope(self.engine) as s:
            for row in rows:
                row = dict(row)
                ann = self.annotator(row.pop("who"), row.pop("who_kind", "human"))
                row.setdefault("payload", {"choice": row.get("choice")})
                s.add(Feedback(annotator_id=ann, **row))

    def pairwise(self, who: str, prompt_id: int, a: int, b: int, choice: str, **extra: Any) -> None:
        self.feedback([{"who": who, "kind": "pairwise", "prompt_id": prompt_id, "response_a_id": a,
                        "response_b_id": b, "choice": choice, **extra}])

    def audit(self, **settings: Any) -> AuditResult:
        """The audit stage on this store, as the CLI runs it (without progress bars)."""
        ctx = Context(store=Store.open(self.url), progress=Reporter(enabled=False))
        return run(AuditConfig(**settings), ctx)

    def snapshot(self, splits: dict[str, list[int]]) -> int:
        sid = self._add(Snapshot(name="t", content_hash="0" * 64, recipe={}, stats={}))
        with session_scope(self.engine) as s:
            pos = 0
            for split, pids in splits.items():
                for pid in pids:
                    s.add(SnapshotItem(snapshot_id=sid, position=pos, split=split, kind="pairwise",
                                       prompt_id=pid, data={}))
                    pos += 1
        return sid


@pytest.fixture
def store(sqlite_url: str) -> StoreBuilder:
    return StoreBuilder(sqlite_url)


@pytest.fixture
def any_store(db_url: str) -> StoreBuilder:
    """The same builder on SQLite and on PostgreSQL."""
    return StoreBuilder(db_url)
