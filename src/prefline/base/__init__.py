"""The bottom layer: errors, hashing, paths, precision, progress, config and the stage contract.

Nothing here imports from any other prefline package (an import-linter contract holds it).
"""
