"""Import validated examples into the store: one transaction, idempotent, bulk inserts.

Prompts and responses are keyed by content hash; every feedback row gets an idempotency
key derived from its annotator and content (a record repeated within one file is one vote:
``load_records`` leaves the repeats out and the summary lists them), so re-importing a file adds nothing and
importing a file with appended lines adds only the new lines. Rows go in through
``store.bulk`` (``INSERT ... ON CONFLICT DO NOTHING``; COPY on PostgreSQL).

Bad records either fail the whole import (``on_bad="fail"``, nothing stored) or, with
``on_bad="skip"``, go to a rejects file (line, reason, raw record) while the rest are
stored; that file is published only once the store has committed.
"""

from __future__ import annotations

import gc
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine

from prefline.base.errors import PreflineError
from prefline.base.hashing import canonical_json
from prefline.base.stage import StageResult
from prefline.formats.examples import (
    Messages,
    PreferencePair,
    RankingExample,
    UnpairedExample,
)
from prefline.formats.jsonl import stage_jsonl
from prefline.formats.load import Rejected, check_on_bad, load_records
from prefline.formats.records import BadRecord, Example, Record, messages_json
from prefline.pii.records import clean_record
from prefline.pii.redactor import Redactor
from prefline.store.bulk import (
    bulk_session,
    driver_errors,
    dumps,
    insert_ignore,
    timestamp,
    upsert_ids,
)
from prefline.store.db import open_store
from prefline.store.models import ANNOTATOR_KINDS, AuditLog, utcnow


@dataclass
class ImportSummary(StageResult):
    """What one import added. ``records`` counts the valid records stored (or already
    there); ``feedback_existing`` counts records already in the store; ``by_kind`` counts
    the file's records per feedback kind (pairwise, binary, ...); ``skipped_identical``
    lists the lines of pairs skipped because chosen equals rejected; ``rejected`` counts
    the bad records left out under ``on_bad="skip"``, listed in ``rejects_path``;
    ``duplicates`` lists ``(line, line of the first)`` for records repeating an earlier one
    of the same file (stored once)."""

    path: str
    source: str
    records: int = 0
    prompts_added: int = 0
    responses_added: int = 0
    feedback_added: int = 0
    feedback_existing: int = 0
    skipped_identical: list[int] = field(default_factory=list)
    duplicates: list[tuple[int, int]] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    rejects_path: str | None = None
    seconds: float = 0.0
    redaction: dict[str, Any] | None = None
    """Personal data found (``RedactionStats.to_json``: counts by entity type, no content) and
    the policy applied; None when the source's policy is keep."""

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def response_hash(prompt_key: str, text: str, model: str | None = None,
                  model_version: str | None = None) -> str:
    """The one response identity used by import, generation and the ingest API.

    Responses belong to a prompt, so the same text under two prompts is two rows; the same
    text from two named models is two rows too, while text with no model recorded (as in
    imported preference files) hashes to the same row whichever path stored it.
    """
    if model is None and model_version is None:
        return _sha(prompt_key, text)
    return _sha(prompt_key, text, model or "", model_version or "")


def _texts(ex: Example) -> list[str]:
    """The response texts an example mentions, in a fixed order."""
    if isinstance(ex, PreferencePair):
        return [ex.chosen, ex.rejected]
    if isinstance(ex, UnpairedExample):
        return [ex.completion]
    if isinstance(ex, RankingExample):
        return list(ex.responses)
    return [ex.response]


_PROMPT_COLS = ("content_hash", "text", "messages", "context", "tags", "created_at")
_RESPONSE_COLS = ("content_hash", "prompt_id", "text", "model", "model_version", "gen_params",
                  "created_at")
_FEEDBACK_COLS = ("kind", "annotator_id", "prompt_id", "response_a_id", "response_b_id",
                  "response_id", "choice", "payload", "idempotency_key", "source", "created_at",
                  "user_id", "segment")


def _prompt_rows(records: Sequence[Record], now: Any) -> dict[str, tuple[Any, ...]]:
    prompts: dict[str, Messages] = {}
    tags: dict[str, list[str]] = {}
    for rec in records:
        ex = rec.example
        key = ex.prompt_key
        if key not in prompts:
            prompts[key] = ex.prompt
            tags[key] = list(dict.fromkeys(ex.tags))
        elif ex.tags:  # most records have none
            seen = tags[key]
            seen.extend(t for t in dict.fromkeys(ex.tags) if t not in seen)
    rows = {}
    for key, msgs in prompts.items():
        text = msgs[0]["content"] if len(msgs) == 1 and msgs[0]["role"] == "user" else None
        rows[key] = (key, text, messages_json(msgs), None, dumps(tags[key]) if tags[key] else "[]", now)
    return rows


def _feedback_cols(ex: Example, rids: list[int],
                   payloads: dict[str, str | None]) -> tuple[Any, ...]:
    """(kind, response_a_id, response_b_id, response_id, choice, payload JSON, judgment) for
    one example whose ``_texts`` have the response ids ``rids``; ``judgment`` is what its
    idempotency key holds of the verdict (tie|strength|label|scores). Most pairs' payloads
    repeat ({"choice": "a", ...}): ``payloads`` keeps each encoding once."""
    if isinstance(ex, PreferencePair):
        choice = "tie" if ex.tie else "a"
        memo = f"{choice}|{ex.strength}"
        payload = payloads.get(memo)
        if payload is None:
            payload = payloads[memo] = dumps({"choice": choice, "strength": ex.strength})
        return ("pairwise", rids[0], rids[1], None, choice, payload,
                f"{ex.tie}|{ex.strength}|None|")
    if isinstance(ex, UnpairedExample):
        return ("binary", None, None, rids[0], None, dumps({"value": ex.label}),
                f"None|None|{ex.label}|")
    if isinstance(ex, RankingExample):
        return ("ranking", None, None, None, None, dumps({"order": rids}), "None|None|None|")
    scores = f"None|None|None|{canonical_json(ex.scores) if ex.scores else ''}"
    return ("rating", None, None, rids[0], None, dumps({"scores": ex.scores}), scores)


def _feedback_key(annotator: str, ex: Example, judgment: str, response_hashes: list[str],
                  seen: dict[str, int]) -> str:
    """Same annotator + same judgment → same key; the n-th repeat in a file gets n.

    Response hashes already cover the prompt, so they stand in for prompt and texts. The key
    is ``_sha(annotator, kind, judgment, *hashes[, person], n)``, built as one string."""
    base = (f"{annotator}\x1f{type(ex).__name__}\x1f{judgment}\x1f"
            + "\x1f".join(response_hashes))
    if ex.user is not None or ex.segment:  # keys of records without a user stay as they were
        base += f"\x1fuser:{ex.user}|{canonical_json(ex.segment)}"
    n = seen[base] = seen.get(base, 0) + 1
    return "import:" + _sha(base, str(n))


def _check_kind(kind: str, path: str, line: int | None) -> None:
    if kind not in ANNOTATOR_KINDS:
        raise BadRecord(f"unknown annotator kind {kind!r}; expected one of {', '.join(ANNOTATOR_KINDS)}",
                        path=path, line=line, field="annotator_kind")


def _annotator_ids(conn: Connection, records: Sequence[Record], default: str, default_kind: str,
                   path: str, now: Any) -> dict[str, int]:
    """Ids for every annotator the records name, creating the missing ones."""
    kinds: dict[str, str] = {}
    for rec in records:
        kind = rec.annotator_kind or default_kind
        _check_kind(kind, path, rec.line)  # import_file checked already; other callers may not
        kinds.setdefault(rec.annotator or default, kind)
    rows = {n: (n, k, None, None, now) for n, k in kinds.items()}
    return upsert_ids(conn, "annotators", ("name", "kind", "role", "config", "created_at"),
                      rows, "name")[0]


def write_records(conn: Connection, records: Sequence[Record], *, source: str,
                  annotator: str, annotator_kind: str, summary: ImportSummary) -> None:
    """Insert ``records`` in the caller's transaction and fill in ``summary``'s counts."""
    now = timestamp(conn, utcnow())
    annotator_ids = _annotator_ids(conn, records, annotator, annotator_kind, summary.path, now)
    prompt_ids, summary.prompts_added = upsert_ids(
        conn, "prompts", _PROMPT_COLS, _prompt_rows(records, now), "content_hash")
    hashes: list[list[str]] = []
    responses: dict[str, tuple[Any, ...]] = {}
    for rec in records:  # hashed once: the same hashes key responses and feedback
        ex = rec.example
        pk, pid, texts = ex.prompt_key, prompt_ids[ex.prompt_key], _texts(ex)
        # = response_hash(pk, t) (imports name no model), without two calls per text
        hs = [sha256(f"{pk}\x1f{t}".encode()).hexdigest() for t in texts]
        hashes.append(hs)
        for h, text in zip(hs, texts, strict=True):
            if h not in responses:
                responses[h] = (h, pid, text, None, None, None, now)
    response_ids, summary.responses_added = upsert_ids(
        conn, "responses", _RESPONSE_COLS, responses, "content_hash")
    seen: dict[str, int] = {}
    feedback: dict[str, tuple[Any, ...]] = {}
    payloads: dict[str, str | None] = {}
    for rec, hs in zip(records, hashes, strict=True):
        ex, name = rec.example, rec.annotator or annotator
        kind, a, b, r, choice, payload, judgment = _feedback_cols(
            ex, [response_ids[h] for h in hs], payloads)
        key = _feedback_key(name, ex, judgment, hs, seen)
        feedback[key] = (kind, annotator_ids[name], prompt_ids[ex.prompt_key], a, b, r, choice,
                         payload, key, source, now, ex.user,
                         dumps(ex.segment) if ex.segment else None)
    summary.feedback_added = insert_ignore(conn, "feedback", _FEEDBACK_COLS,
                                           list(feedback.values()), "idempotency_key")
    summary.feedback_existing = len(feedback) - summary.feedback_added
    summary.by_kind = dict(Counter(row[0] for row in feedback.values()))


def import_file(path: str | Path, db: str | Engine | None = None, *, format: str = "auto",
                source: str | None = None, annotator: str | None = None,
                annotator_kind: str = "human", actor: str = "cli",
                progress: Callable[[int], None] | None = None,
                skip_identical: bool | None = None,
                stage: Callable[[str], None] | None = None,
                on_bad: str = "fail", rejects: Path | None = None,
                redactor: Redactor | None = None) -> ImportSummary:
    """Validate all of ``path``, then store its records in one transaction.

    ``source`` defaults to the file name and ``annotator`` to ``import:<source>``; records
    with their own ``annotator``/``annotator_kind`` fields override both. ``skip_identical``
    is passed to :func:`prefline.formats.load.load_records`. ``on_bad="fail"`` stores
    nothing if any record is bad (raising its BadRecord); ``"skip"`` stores the valid ones
    and writes each bad one as ``{"line", "reason", "record"}`` to ``rejects`` (default
    ``<input name>.rejects.jsonl`` next to the input; written, possibly empty, on every
    successful skip import and never on a failed one). ``progress`` gets the records read
    so far and ``stage`` is told "writing" once the file has validated. ``redactor`` applies
    the source's personal-data policy to prompts and responses (a record refused under
    ``reject`` is a bad record like any other). Returns counts.
    """
    start = time.perf_counter()
    path = Path(path)
    rejects_path = _rejects_path(path, on_bad, rejects)
    if annotator_kind not in ANNOTATOR_KINDS:
        raise PreflineError(f"unknown annotator kind {annotator_kind!r}; expected one of "
                            f"{', '.join(ANNOTATOR_KINDS)}", field="annotator_kind")
    source = source or path.name
    policy = "keep" if redactor is None else redactor.policy(source)
    skipped: list[int] = []
    rejected: list[Rejected] = []
    duplicates: list[tuple[int, int]] = []
    with _gc_paused():
        records = _read(path, format, source, annotator_kind, redactor, policy,
                        progress=progress, skip_identical=skip_identical, on_bad=on_bad,
                        skipped=skipped, rejected=rejected, duplicates=duplicates)
    summary = ImportSummary(path=str(path), source=source, records=len(records),
                            skipped_identical=skipped, duplicates=duplicates,
                            rejected=len(rejected),
                            rejects_path=None if rejects_path is None else str(rejects_path),
                            redaction=None if redactor is None or policy == "keep" else
                            {"policy": policy, **redactor.stats.to_json()})
    # Staged before the store is touched, so an unwritable rejects location fails first;
    # published only after the commit, so a failed import leaves no rejects file either.
    staged = None if rejects_path is None else _stage_rejects(rejects_path, rejected)
    try:
        engine = db if isinstance(db, Engine) else open_store(db)
        if stage is not None:
            stage("writing")
        with _gc_paused():
            _write(engine, path, records, summary, format, actor, annotator, annotator_kind)
    except BaseException:
        if staged is not None:
            staged.unlink(missing_ok=True)
        raise
    if staged is not None and rejects_path is not None:
        _publish(staged, rejects_path)
    summary.seconds = time.perf_counter() - start
    return summary


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while an import reads or writes: it keeps 10⁵s of
    records, dicts and row tuples alive, and each full collection walks them all to free
    nothing (they hold no reference cycles), a sixth of the import's CPU at 10⁵ records.
    Reference counting frees as usual; collection resumes (if it was on) right after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read(path: Path, format: str, source: str, annotator_kind: str, redactor: Redactor | None,
          policy: str, **load: Any) -> list[Record]:
    """Every record of ``path`` (:func:`load_records` with the ``load`` arguments), each
    annotator kind checked; the source's personal-data ``policy`` refuses (``reject``) or
    rewrites (``redact``, ``hash``) records that hold personal data."""

    def check(rec: Record) -> None:
        _check_kind(rec.annotator_kind or annotator_kind, str(path), rec.line)
        if redactor is not None and policy == "reject":
            clean_record(redactor, rec, policy, source, str(path))

    records = load_records(path, format, check=check, **load)
    if redactor is not None and policy in ("redact", "hash"):
        records = [clean_record(redactor, rec, policy, source, str(path)) for rec in records]
    return records


def _rejects_path(path: Path, on_bad: str, rejects: Path | None) -> Path | None:
    """Where ``on_bad="skip"`` writes rejected records (None under ``"fail"``)."""
    check_on_bad(on_bad)
    if on_bad == "fail":
        if rejects is not None:
            raise PreflineError("a rejects file is only written when bad records are skipped "
                                "(--on-bad skip)", path=str(rejects), field="rejects")
        return None
    out = Path(rejects) if rejects is not None else path.with_name(f"{path.name}.rejects.jsonl")
    if out.resolve() == path.resolve():
        raise PreflineError("the rejects file would overwrite the input file", path=str(out),
                            field="rejects")
    return out


def _stage_rejects(out: Path, rejected: list[Rejected]) -> Path:
    # default=str: Parquet/HF rows may hold values JSON cannot (dates, bytes); the rejects
    # file is for reading, so their text is enough.
    try:
        return stage_jsonl(out, (r.to_row() for r in rejected), default=str)
    except OSError as exc:
        raise PreflineError(f"cannot write the rejects file: {exc.strerror or exc} "
                            "(choose another place with --rejects)", path=str(out),
                            field="rejects") from None


def _publish(staged: Path, out: Path) -> None:
    try:
        os.replace(staged, out)
    except OSError as exc:
        raise PreflineError(f"the records were stored, but the rejects file could not be put in "
                            f"place ({exc.strerror or exc}); it was left at {staged}",
                            path=str(out)) from None


def _write(engine: Engine, path: Path, records: list[Record], summary: ImportSummary,
           format: str, actor: str, annotator: str | None, annotator_kind: str) -> None:
    """Store ``records`` and the audit entry in one transaction (all or nothing)."""
    source = summary.source
    try:
        with engine.begin() as conn, bulk_session(conn):
            write_records(conn, records, source=source, annotator=annotator or f"import:{source}",
                          annotator_kind=annotator_kind, summary=summary)
            conn.execute(AuditLog.__table__.insert(), [{  # type: ignore[attr-defined]
                "actor": actor, "action": "import", "target": f"source:{source}",
                "created_at": utcnow(),
                "details": {"path": str(path.resolve()), "format": format, "records": summary.records,
                            "feedback_added": summary.feedback_added,
                            "feedback_existing": summary.feedback_existing,
                            "skipped_identical": len(summary.skipped_identical),
                            "duplicates": len(summary.duplicates),
                            "rejected": summary.rejected, "redaction": summary.redaction}}])
    except driver_errors() as exc:  # rows go straight to the driver, so its errors arrive raw
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PreflineError(f"the database refused the import, nothing was written: {reason}",
                            path=str(path)) from None
