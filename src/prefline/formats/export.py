"""Write a snapshot as TRL-compatible JSONL for one training task.

- ``dpo``: ``prompt``/``chosen``/``rejected``; conversational (message lists, the default,
  lossless) or standard (plain strings). Tied pairs are left out: DPO needs a preference.
- ``reward``: ``chosen``/``rejected`` with the prompt inside (TRL's implicit-prompt shape).
- ``kto``: ``prompt``/``completion``/``label``, from binary feedback plus every non-tied
  pair unpaired (chosen → true, rejected → false), as TRL's ``unpair_preference_dataset``.
- ``ranking``: ``prompt``/``responses``/``order`` (identity order: responses best first).

The file is written next to ``OUT`` and renamed into place, so a failure leaves no
half-written export.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.formats.examples import Messages, prompt_text
from prefline.formats.jsonl import write_jsonl

TASKS = ("dpo", "reward", "kto", "ranking")
STYLES = ("conversational", "standard")


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


def export_snapshot(out: str | Path, task: str, snapshot: str | int | None = None,
                    split: str = "all", db: str | None = None,
                    style: str = "conversational") -> tuple[int, Any]:
    """Write snapshot ``snapshot`` (id, name, hash prefix; None = latest) for ``task``.

    Returns ``(rows written, the Snapshot row)``. Raises PreflineError for an unknown
    task/style or when the snapshot holds nothing usable for the task.
    """
    from prefline.store.snapshots import get_snapshot, snapshot_items

    if task not in TASKS:
        raise PreflineError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}", field="task")
    if style not in STYLES:
        raise PreflineError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}", field="style")
    snap = get_snapshot(snapshot, db)
    rows = list(task_rows(task, snapshot_items(snap.id, split, db), style))
    if not rows:
        raise PreflineError(f"snapshot {snap.id} has no {split} items usable for task '{task}'",
                            field="task")
    write_jsonl(Path(out), rows)
    return len(rows), snap
