"""TRL-compatible row shapes for each training task (``store/export_stage.py`` writes them).

- ``dpo``: ``prompt``/``chosen``/``rejected``; conversational (message lists, the default,
  lossless) or standard (plain strings). Tied pairs are left out: DPO needs a preference.
- ``reward``: ``chosen``/``rejected`` with the prompt inside (TRL's implicit-prompt shape).
- ``kto``: ``prompt``/``completion``/``label``, from binary feedback plus every non-tied
  pair unpaired (chosen → true, rejected → false), as TRL's ``unpair_preference_dataset``.
- ``ranking``: ``prompt``/``responses``/``order`` (identity order: responses best first).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prefline.formats.examples import Messages, prompt_text

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
