"""The bottom layer: errors, hashing, paths, precision, progress, config and the stage contract.

Nothing here imports from any other prefline package (an import-linter contract holds it).
"""

VERSION = "0.1.0"
"""The package version (``prefline.__version__``); keep equal to pyproject.toml's."""
