"""The registry: every artifact with its typed inputs (a lineage graph) and code version.

``record`` (or ``record_result`` for a stage result) writes; ``lineage`` reads; ``version``
says which code produced an artifact and whether the tree was dirty.
"""

from prefline.base.stage import INPUT_ROLES, Ref
from prefline.registry.lineage import (
    ancestors,
    describe_input,
    get_artifact,
    inputs_by_artifact,
    inputs_of,
    lineage_tree,
    list_artifacts,
    render_tree,
)
from prefline.registry.record import record, record_result
from prefline.registry.version import clear_code_version_cache, code_version

__all__ = [
    "INPUT_ROLES", "Ref", "ancestors", "clear_code_version_cache", "code_version",
    "describe_input", "get_artifact", "inputs_by_artifact", "inputs_of", "lineage_tree", "list_artifacts",
    "record", "record_result", "render_tree",
]
