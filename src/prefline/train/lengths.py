"""The one rule for ``max_length`` shared by every trainer (DPO family, KTO, reward models).

Two checks, both before any training step. The config refuses a budget below
:data:`MIN_MAX_LENGTH` before any model loads. After tokenisation, :func:`check_room`
refuses a budget too small to hold a prompt and a response: one that would cut both the
prompt and the response of every training example (a run that never sees a whole response
nor the start of its prompt trains on nothing the user meant). A budget that cuts only long
prompts, or only long responses, is allowed: the run notes how many it cut.

Truncation itself (:func:`cuts`) is the same in both trainers: when prompt + the longer
response overflow the room, the prompt is cut from the left, keeping at least a quarter of
the room for it, and only then responses are cut on the right. Torch-free, so configs can
use it.
"""

from __future__ import annotations

from collections.abc import Iterable

from prefline.base.errors import PreflineError

MIN_MAX_LENGTH = 16
"""The smallest ``max_length`` any trainer accepts: a chat template's own tokens, a short
prompt and a short response."""


def check_max_length(max_length: int) -> None:
    """Refuse a budget below :data:`MIN_MAX_LENGTH` (configs call this in ``__post_init__``)."""
    if max_length < MIN_MAX_LENGTH:
        raise PreflineError(f"max_length must be at least {MIN_MAX_LENGTH} tokens to hold a "
                            f"prompt and a response, got {max_length}", field="max_length")


def cuts(prompt: int, longest: int, room: int) -> tuple[bool, bool]:
    """(prompt cut, longest response cut) for a ``prompt``-token prompt and ``longest``-token
    response in ``room`` tokens, under the truncation rule of the module docstring."""
    if prompt + longest <= room:
        return False, False
    kept = min(prompt, max(room - longest, room // 4))
    return kept < prompt, longest > room - kept


def check_room(examples: Iterable[tuple[int, int]], room: int, *, max_length: int, noun: str,
               reserved: int = 0) -> None:
    """Refuse a budget that cuts both the prompt and the response of every example.

    ``examples`` yields (prompt tokens, longest response tokens) before truncation and is
    read only up to the first example that keeps its whole prompt or its whole response, so
    a generator that tokenises on demand usually costs one example. ``room`` is
    ``max_length`` less ``reserved`` special tokens; ``noun`` names the examples
    (``"preference pairs"``).
    """
    count, need = 0, 0
    for prompt, longest in examples:
        if not all(cuts(prompt, longest, room)):
            return
        count += 1
        whole = prompt + longest + reserved
        need = whole if count == 1 else min(need, whole)
    if count:
        raise PreflineError(f"max_length {max_length} is too small to hold a prompt and a "
                            f"response: it cuts both in every one of the {count} {noun} (the "
                            f"shortest needs {need} tokens whole); raise max_length",
                            field="max_length")
