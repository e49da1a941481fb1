"""The stage contract: ``run(cfg: <Stage>Config, ctx: Context) -> <Stage>Result``.

A stage's config is a frozen, validated dataclass (see :mod:`prefline.base.config`); its
result is a dataclass that mixes in :class:`StageResult`. A result that produced an
artifact (a model, an evaluation) says so with ``artifact_kind`` and lists its typed
inputs as :class:`Ref`s; the *caller* (CLI, demo, Python user) records it once with
``prefline.registry.record``. Stages never register themselves.

``Context`` lives one layer up, in :mod:`prefline.store.context`, because it carries the
store handle.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

INPUT_ROLES = ("snapshot", "data", "base_model", "reference_model", "reward_model", "judge",
               "previous_policy", "policy", "evaluation", "config", "parent")
"""What an input was to the artifact that used it (``artifact_inputs.role``). ``parent`` is
the untyped link of artifacts registered before lineage became a graph (migration 0003
moved ``artifacts.parent_id`` there); new records name a specific role."""


@dataclasses.dataclass(frozen=True)
class Ref:
    """One typed input of an artifact: a registered artifact, a snapshot, or anything else
    named by a stable string (a model path or hub id, a judge spec, a file's content hash)."""

    role: str
    """One of :data:`INPUT_ROLES`."""
    artifact_id: int | None = None
    snapshot_id: int | None = None
    ref: str | None = None
    """Hash, path, hub id or judge spec, for inputs that are not registered artifacts."""

    def __post_init__(self) -> None:
        if self.role not in INPUT_ROLES:
            raise ValueError(f"unknown input role {self.role!r}; expected one of {INPUT_ROLES}")
        if self.artifact_id is None and self.snapshot_id is None and not self.ref:
            raise ValueError("a Ref needs an artifact id, a snapshot id or a ref string")


def jsonable(value: Any) -> Any:
    """Plain JSON types: dataclasses → dicts, tuples → lists, Paths → str, NaN → None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return jsonable(value.item())
    return value


class StageResult:
    """Mixin for stage result dataclasses."""

    artifact_kind: ClassVar[str | None] = None
    """Registry kind when the result is an artifact (``reward_model``, ``policy``, ...)."""

    json_omit: ClassVar[tuple[str, ...]] = ()
    """Fields left out of :meth:`to_json` (an in-memory model, a per-step history on disk)."""

    def to_json(self) -> dict[str, Any]:
        """Every field but :attr:`json_omit` as plain JSON types (what ``--json`` prints)."""
        out = jsonable(self)
        assert isinstance(out, dict)
        for name in self.json_omit:
            out.pop(name, None)
        return out

    def lineage(self) -> tuple[Ref, ...]:
        """The typed inputs to record with the artifact (default: the ``inputs`` field)."""
        return tuple(getattr(self, "inputs", ()))
