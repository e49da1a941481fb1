"""TRL-compatible row shapes for each training task (``store/export_stage.py`` writes them).

- ``dpo``: ``prompt``/``chosen``/``rejected``; conversational (message lists, the default,
  lossless) or standard (plain strings). Tied pairs are left out: DPO needs a preference.
- ``reward``: ``chosen``/``rejected`` with the prompt inside (TRL's implicit-prompt shape).
- ``kto``: ``prompt``/``completion``/``label``, from binary feedback plus every non-tied
  pair unpaired (chosen → true, rejected → false), as TRL's ``unpair_preference_dataset``.
- ``ranking``: ``prompt``/``responses``/``order`` (identity order: responses best first).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.formats.examples import Messages, prompt_text
from prefline.formats.jsonl import write_jsonl

TASKS = ("dpo", "reward", "kto", "ranking")
STYLES = ("conversational", "standard")
CONTAINERS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet",
              ".pq": "parquet"}
"""Export file suffixes and what is written for each (``.json`` holds JSON Lines, which
``datasets.load_dataset("json", ...)`` reads too). Any other suffix is refused rather than
written as something its name does not say."""


def export_container(out: str | Path) -> str:
    """``jsonl`` or ``parquet`` for the file ``out``; PreflineError for any other suffix or
    for a path that is an existing folder."""
    path = Path(out)
    if path.is_dir():
        raise PreflineError("is a folder; give the path of the file to write, e.g. "
                            f"{path / 'train.jsonl'}", path=str(path), field="out")
    suffix = path.suffix.lower()
    if suffix not in CONTAINERS:
        raise PreflineError(f"cannot write '{suffix or 'no suffix'}' files; name the file "
                            ".jsonl (JSON Lines) or .parquet (Parquet)", path=str(path), field="out")
    return CONTAINERS[suffix]


def write_rows(out: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` to ``out`` as JSON Lines or Parquet (by its suffix), atomically: a
    failure leaves the old file, or none. Parent folders are created. OS errors (a parent
    that is a file, no permission, disk full) → PreflineError naming the file."""
    path = Path(out)
    kind = export_container(path)
    try:
        if kind == "jsonl":
            return write_jsonl(path, rows)
        return _write_parquet(path, rows)
    except OSError as exc:
        raise PreflineError(f"cannot write the file: {exc.strerror or exc}", path=str(path),
                            field="out") from None


def _write_parquet(out: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _reply(text: str, style: str) -> Any:
    return [{"role": "assistant", "content": text}] if style == "conversational" else text


def _prompt(msgs: Messages, style: str) -> Any:
    return msgs if style == "conversational" else prompt_text(msgs)


def _with_prompt(msgs: Messages, text: str, style: str) -> Any:
    if style == "conversational":
        return [*msgs, {"role": "assistant", "content": text}]
    return prompt_text(msgs) + "\n\n" + text


def task_rows(task: str, items: list[dict[str, Any]], style: str = "conversational") -> Iterator[dict[str, Any]]:
    """TRL rows for ``task`` from snapshot items (``{"kind", "data"}`` dicts)."""
    for it in items:
        kind, d = it["kind"], it["data"]
        p = d["prompt"]
        if kind == "pairwise" and not d["tie"]:
            if task == "dpo":
                yield {"prompt": _prompt(p, style), "chosen": _reply(d["chosen"], style),
                       "rejected": _reply(d["rejected"], style)}
            elif task == "reward":
                yield {"chosen": _with_prompt(p, d["chosen"], style),
                       "rejected": _with_prompt(p, d["rejected"], style)}
            elif task == "kto":
                for text, label in ((d["chosen"], True), (d["rejected"], False)):
                    yield {"prompt": _prompt(p, style), "completion": _reply(text, style), "label": label}
        elif kind == "binary" and task == "kto":
            yield {"prompt": _prompt(p, style), "completion": _reply(d["completion"], style),
                   "label": d["label"]}
        elif kind == "ranking" and task == "ranking":
            yield {"prompt": _prompt(p, style), "responses": [_reply(r, style) for r in d["responses"]],
                   "order": list(range(len(d["responses"])))}
