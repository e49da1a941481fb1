"""A rich progress bar for training steps that shows the latest metrics."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

SHOWN = ("loss", "accuracy", "margin", "examples_per_s", "tokens_per_s")


class StepProgress:
    """One bar on stderr: ``update(metrics)`` advances a step, ``set(n)`` jumps to ``n``.

    ``total=None`` is a bar whose length is unknown (e.g. records read from a file)."""

    def __init__(self, total: int | None, enabled: bool = True, start: int = 0,
                 description: str = "training", transient: bool = False) -> None:
        console = Console(stderr=True)
        # A transient bar leaves nothing behind on a terminal; in a log it would leave a
        # stray line, so it is not drawn there at all.
        self.enabled = enabled and (console.is_terminal or not transient)
        self.progress: Progress | None = None
        if self.enabled:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=console, transient=transient,
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

    def set(self, completed: int | None = None, description: str | None = None) -> None:
        """Jump to ``completed`` and/or change the description."""
        if self.progress is not None:
            self.progress.update(self.task, completed=completed, description=description)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.progress is not None:
            self.progress.stop()


class Reporter:
    """What ``Context.progress`` holds: makes progress bars, or nothing when disabled.

    Disabled under ``--json`` (stdout must stay machine-readable; bars go to stderr anyway)
    and on non-zero ranks under torchrun.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def bar(self, total: int | None, description: str, start: int = 0,
            transient: bool = False) -> StepProgress:
        """A bar over ``total`` steps; use as a context manager and call ``update(metrics)``.
        ``transient`` bars disappear when done (for steps whose result is printed anyway)."""
        return StepProgress(total, enabled=self.enabled, start=start, description=description,
                            transient=transient)

    def tick(self, description: str) -> TickBar:
        """A bar whose total is known only later: call it with ``(done, total)``."""
        return TickBar(self, description)


class TickBar:
    """Adapts ``(done, total)`` callbacks (generation, judging) to a :class:`StepProgress`."""

    def __init__(self, reporter: Reporter, description: str) -> None:
        self.reporter, self.description = reporter, description
        self._bar: StepProgress | None = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = self.reporter.bar(total, self.description).__enter__()
        for _ in range(max(0, done - self._done)):
            self._bar.update({})
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
