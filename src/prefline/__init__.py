"""prefline: preference optimisation of AI models, from feedback event to deployed model.

Every stage's config and ``run`` function, the store handle and the registry are available
as ``prefline.<name>`` (see :mod:`prefline.api` and docs/python-api.md). They are loaded on
first use, so ``import prefline`` and the command line start without importing torch.
"""

from __future__ import annotations

from typing import Any

from prefline.base import VERSION

__version__ = VERSION


def __getattr__(name: str) -> Any:
    # PEP 562: the one lazy import in the package, of one module, so `prefline --help` and
    # `prefline import` do not load torch and transformers.
    if name.startswith("_") or name == "api":  # the import system probes these: not ours
        raise AttributeError(f"module 'prefline' has no attribute {name!r}")
    from prefline import api

    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'prefline' has no attribute {name!r}")


def __dir__() -> list[str]:
    from prefline import api

    return sorted([*globals(), *api.__all__])
