"""Benchmarks, all on one harness (``prefline.bench.harness``), outside the stage packages.

One module per benchmark (``dpo``, ``reward``, ``ingest``, ``audit``, ``collect``,
``generation``), each defining a config dataclass, the code one side runs, and ``BENCH`` for
the harness; ``prefline bench <name>`` (``prefline.cli.bench``) runs them. Results and
commands: docs/benchmarks.md.
"""
