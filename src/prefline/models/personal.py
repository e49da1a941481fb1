"""Personalised reward heads: the reward depends on who asks (issue 14, item 2).

A reward model conditions on one attribute, ``key``: a segment attribute (``style`` reads
``example.segment["style"]``) or ``user`` (the pseudonymous user id). The values seen in
training are its ``groups``; index 0 is the shared fallback, used for an example without the
attribute, for a value unseen in training, and when scoring without a segment.

- ``heads``: one head per group over the shared backbone; the fallback is the model's
  ordinary (global) head.
- ``embedding``: r(x, g) = w·h + (P h)·e_g, a learned embedding e_g per group and a learned
  fallback embedding e_0. The term must be multiplicative: an additive per-group offset
  would cancel in every pairwise comparison.

The fallback learns from examples whose group is dropped at random during training
(``fallback_drop``), so it sees every segment and estimates the population's preference.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prefline.base.errors import PreflineError

MODES = ("heads", "embedding")
FALLBACK = 0
USER_KEY = "user"
"""``key`` value that conditions on the user id instead of a segment attribute."""


@dataclass(frozen=True)
class PersonalSpec:
    """How a reward model conditions on its users (stored in the model card)."""

    mode: str
    key: str
    groups: tuple[str, ...]
    """Values of ``key`` seen in training, in index order 1..G (0 is the fallback)."""
    dim: int = 16
    """Embedding size (embedding mode)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PreflineError(f"personal must be one of {MODES}, got {self.mode!r}",
                                field="personal")
        if not self.groups:
            raise PreflineError(f"no training example has the attribute {self.key!r}; a "
                                "personalised model needs at least one group",
                                field="segment_key")

    def value_of(self, segment: Mapping[str, str] | None, user: str | None) -> str | None:
        """The attribute this model conditions on, for one example (None: fallback)."""
        if self.key == USER_KEY:
            return user
        return (segment or {}).get(self.key)

    def index(self, values: Sequence[str | None]) -> Tensor:
        """Group index per value (0 for None or a value unseen in training), ``[N]`` long."""
        at = {g: i + 1 for i, g in enumerate(self.groups)}
        return torch.tensor([at.get(v, FALLBACK) if v is not None else FALLBACK for v in values],
                            dtype=torch.long)


def group_counts(examples: Sequence[object], key: str) -> Counter[str]:
    """How many ``examples`` carry each value of ``key`` (segment attribute or user id)."""
    found: Counter[str] = Counter()
    for ex in examples:
        value = getattr(ex, "user", None) if key == USER_KEY else \
            (getattr(ex, "segment", None) or {}).get(key)
        if value is not None:
            found[str(value)] += 1
    return found


class PersonalHead(nn.Module):
    """``forward(pooled, base, groups) -> [N, H]``: the per-group scores, given the pooled
    vectors ``[N, D]``, the global head's scores ``base`` ``[N, H]`` and group indices ``[N]``."""

    def __init__(self, spec: PersonalSpec, hidden: int, n_heads: int) -> None:
        super().__init__()
        self.spec = spec
        n = len(spec.groups)
        if spec.mode == "heads":
            # All groups' heads as one Linear (a registered per-sample-gradient layer in
            # Opacus, so DP-SGD needs no custom sampler); a row reads its group's slice.
            self.heads = nn.Linear(hidden, n * n_heads)
            nn.init.normal_(self.heads.weight, std=1.0 / math.sqrt(hidden + 1))
            nn.init.zeros_(self.heads.bias)
        else:
            self.proj = nn.Linear(hidden, n_heads * spec.dim, bias=False)
            nn.init.normal_(self.proj.weight, std=1.0 / math.sqrt(hidden + 1))
            self.embed = nn.Embedding(n + 1, spec.dim)
            nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(spec.dim))

    def forward(self, pooled: Tensor, base: Tensor, groups: Tensor) -> Tensor:
        # Any leading dims (``[N]``, or ``[B, 2]`` for DP-SGD's per-pair batches).
        groups = groups.to(pooled.device)
        if self.spec.mode == "heads":
            h = base.size(-1)
            every = self.heads(pooled).view(*pooled.shape[:-1], -1, h)  # [..., G, H]
            own = (groups - 1).clamp(min=0)[..., None, None].expand(*groups.shape, 1, h)
            seg = every.gather(-2, own).squeeze(-2)
            return torch.where((groups > FALLBACK).unsqueeze(-1), seg, base)
        e = self.embed(groups)  # [..., dim]
        p = self.proj(pooled).view(*pooled.shape[:-1], base.size(-1), self.spec.dim)
        return base + (p * e.unsqueeze(-2)).sum(-1)


def drop_groups(groups: Tensor, rate: float, generator: torch.Generator) -> Tensor:
    """``groups`` with a ``rate`` share set to the fallback at random (trains the fallback)."""
    if rate <= 0:
        return groups
    keep = torch.rand(groups.shape, generator=generator) >= rate
    return torch.where(keep, groups, torch.full_like(groups, FALLBACK))
