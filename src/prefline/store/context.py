"""``Context``: what every stage's ``run(cfg, ctx)`` gets besides its config.

The store handle, the device, the run folder, the seed and the progress reporter. A stage
reads these and nothing global; the CLI, the demo and the Python API each build one
Context and pass it down.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from prefline.base.distributed import DEVICES, check_device, resolve_device
from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter
from prefline.store.db import normalise_url, open_store, session_scope

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "Context", "Store"]


@dataclasses.dataclass(frozen=True)
class Store:
    """A handle on one store (SQLite file or PostgreSQL URL); migrated on first use."""

    url: str

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """``url`` may be a URL, a SQLite file path, or None for the default store."""
        return cls(normalise_url(url))

    @property
    def engine(self) -> Engine:
        return open_store(self.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction (committed on success, rolled back on error)."""
        with session_scope(self.url) as s:
            yield s


@dataclasses.dataclass(frozen=True)
class Context:
    """Where and how a stage runs. Build one per command; pass it to every ``run``."""

    store: Store = dataclasses.field(default_factory=Store.open)
    device: str = "auto"
    """auto (CUDA when present, else CPU) | cpu | cuda | cuda:N."""
    run_dir: Path | None = None
    """Folder for this run's outputs (checkpoints, logs, exported models)."""
    seed: int = 0
    progress: Reporter = dataclasses.field(default_factory=Reporter)

    def __post_init__(self) -> None:
        check_device(self.device)

    @functools.cached_property
    def torch_device(self) -> torch.device:
        """``device`` resolved once for this process: ``auto`` is this process's GPU (torchrun's
        LOCAL_RANK picks it) when CUDA is present, else the CPU. Every model and batch of the
        stage goes here. Resolved on first use, so a Context costs no torch import."""
        return resolve_device(self.device)

    @property
    def db(self) -> str:
        """The store URL (for functions that take ``db``)."""
        return self.store.url

    def require_run_dir(self) -> Path:
        """The run folder, created; a stage that writes files calls this."""
        if self.run_dir is None:
            raise PreflineError("this stage writes files and needs a run folder (--out DIR)",
                                field="out")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return self.run_dir

    def with_run_dir(self, run_dir: str | Path) -> Context:
        return dataclasses.replace(self, run_dir=Path(run_dir))
