"""A rich progress bar for training steps that shows the latest metrics."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

SHOWN = ("loss", "accuracy", "margin", "examples_per_s", "tokens_per_s")


class StepProgress:
    def __init__(self, total: int, enabled: bool = True, start: int = 0,
                 description: str = "training") -> None:
        self.enabled = enabled
        self.progress: Progress | None = None
        if enabled:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=Console(stderr=True), transient=False,
            )
            self.task = self.progress.add_task(description, total=total, completed=start, info="")

    def __enter__(self) -> StepProgress:
        if self.progress is not None:
            self.progress.start()
        return self

    def update(self, rec: dict[str, Any]) -> None:
        if self.progress is None:
            return
        info = "  ".join(f"{k}={rec[k]:.4g}" for k in SHOWN if k in rec)
        self.progress.update(self.task, advance=1, info=info)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.progress is not None:
            self.progress.stop()
