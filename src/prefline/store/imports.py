"""``prefline import`` as a stage: ``run(ImportConfig, ctx) -> ImportSummary``.

The work is :func:`prefline.store.ingest.import_file` (validate the whole file, then one
transaction, idempotent); this module is its typed, documented config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prefline.base.errors import PreflineError
from prefline.formats.load import ALL_FORMATS
from prefline.pii.config import RedactionConfig
from prefline.pii.redactor import redactor_for
from prefline.store.context import Context
from prefline.store.ingest import ImportSummary, import_file
from prefline.store.models import ANNOTATOR_KINDS

Format = Literal["auto", "jsonl", "json", "hh", "csv", "parquet", "hf", "ultrafeedback", "thumbs",
                 "likert", "ranking"]


@dataclass(frozen=True)
class ImportConfig:
    """What to import and how to treat bad records."""

    path: str
    """File (.jsonl/.json/.csv/.parquet, .gz ok) or a saved Hugging Face dataset folder."""
    format: Format = "auto"
    """auto (container by extension and content, record shape by its fields) | a container:
    jsonl | json | hh | csv | parquet | hf | a record shape (container detected):
    ultrafeedback | thumbs | likert | ranking. Shapes: docs/formats.md."""
    source: str | None = None
    """Source label stored with every feedback row (default: the file name)."""
    annotator: str | None = None
    """Annotator name for records that do not name one (default: import:<source>)."""
    annotator_kind: Literal["human", "ai_judge", "implicit"] = "human"
    """Kind of that annotator: human | ai_judge | implicit."""
    skip_identical: bool = False
    """Skip pairs whose chosen equals rejected (HH transcripts always skip them)."""
    on_bad: Literal["fail", "skip"] = "fail"
    """fail: any bad record stores nothing; skip: store the valid records and write the bad
    ones (line, reason, record) to the rejects file."""
    rejects: str | None = None
    """Rejects file for on_bad=skip (default: <input name>.rejects.jsonl next to the input)."""
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    """Personal data in prompts and responses, by the source's policy (docs/privacy.md)."""

    def __post_init__(self) -> None:
        if self.format not in ALL_FORMATS:
            raise PreflineError(f"expected one of {', '.join(ALL_FORMATS)}", field="format")
        if self.annotator_kind not in ANNOTATOR_KINDS:
            raise PreflineError(f"expected one of {', '.join(ANNOTATOR_KINDS)}",
                                field="annotator_kind")
        if self.rejects is not None and self.on_bad != "skip":
            raise PreflineError("rejects applies only with on_bad=skip", field="rejects")


def run(cfg: ImportConfig, ctx: Context, *, actor: str = "cli") -> ImportSummary:
    """Validate ``cfg.path`` whole, then store its records in one transaction."""
    path = Path(cfg.path)
    redactor = redactor_for(cfg.redaction)
    with ctx.progress.bar(None, f"reading {path.name}", transient=True) as bar:
        return import_file(
            path, ctx.db, format=cfg.format, source=cfg.source, annotator=cfg.annotator,
            annotator_kind=cfg.annotator_kind, skip_identical=cfg.skip_identical or None,
            on_bad=cfg.on_bad, rejects=Path(cfg.rejects) if cfg.rejects else None, actor=actor,
            progress=bar.set, stage=lambda s: bar.set(description=f"{s} {path.name}"),
            redactor=redactor)
