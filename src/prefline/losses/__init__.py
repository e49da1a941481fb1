"""Loss functions: pure tensor functions, registered by name.

``reward.py`` holds the reward-model losses (Bradley-Terry, ties, Plackett-Luce, ratings);
``policy.py`` the DPO family and KTO. Each module exposes a ``LOSSES`` dict name -> function;
:data:`REGISTRY` maps ``"reward/<name>"`` and ``"policy/<name>"`` to every one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefline.losses import policy, reward

REGISTRY: dict[str, Callable[..., Any]] = {
    **{f"reward/{name}": fn for name, fn in reward.LOSSES.items()},
    **{f"policy/{name}": fn for name, fn in policy.LOSSES.items()},
}

__all__ = ["REGISTRY", "policy", "reward"]
