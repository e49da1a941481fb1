"""Progress on stderr: rich bars on a terminal, plain lines in logs.

On a terminal a bar redraws in place. When stderr is not a terminal (a CI log, ``2> log``,
``| tee``) a redrawn bar would be lost or cut to 80 columns, so each bar prints one plain,
uncut line every ``interval`` seconds (``PREFLINE_PROGRESS_SECONDS``, default 10) and one
when it closes, flushed at once so ``tail -f`` sees it::

    training 12/30 (40%) loss=0.6926 accuracy=0.5 examples/s=31.2 elapsed 0:00:10 left 0:00:15

A step whose result came from a cache says so (:meth:`Reporter.cached`) instead of
showing a bar stuck at 0/N.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

SHOWN = ("loss", "accuracy", "margin", "examples_per_s", "tokens_per_s")
LABELS = {"examples_per_s": "examples/s", "tokens_per_s": "tokens/s"}
INTERVAL_ENV = "PREFLINE_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 10.0


def interval_from_env() -> float:
    """Seconds between plain progress lines: ``PREFLINE_PROGRESS_SECONDS`` or 10."""
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value >= 0 else DEFAULT_INTERVAL


def clock_text(seconds: float) -> str:
    """``H:MM:SS`` (as rich shows times)."""
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def metrics_text(rec: dict[str, Any]) -> str:
    """The shown metrics of one step, ``loss=0.6926 examples/s=31.2``."""
    return " ".join(f"{LABELS.get(k, k)}={rec[k]:.4g}" for k in SHOWN
                    if isinstance(rec.get(k), int | float))


class LineProgress:
    """A bar for logs: one plain line per report, at most one per ``interval`` seconds
    (whenever a step lands after the interval has passed), and one at :meth:`close`.

    ``clock`` is injectable so the throttling can be tested without waiting."""

    def __init__(self, total: int | None, description: str, start: int = 0,
                 interval: float | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, final: bool = True) -> None:
        self.total, self.description = total, description
        self.completed = self.start = start
        self.interval = interval_from_env() if interval is None else interval
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.final = final
        self.info = ""
        self.reported: tuple[int, str] | None = None
        self.began = self.last = clock()

    def update(self, rec: dict[str, Any]) -> None:
        self.completed += 1
        if rec:
            self.info = metrics_text(rec)
        self._maybe_report()

    def set(self, completed: int | None = None, description: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if description is not None:
            self.description = description
        self._maybe_report()

    def _maybe_report(self) -> None:
        if self.clock() - self.last >= self.interval:
            self.report()

    def line(self) -> str:
        """``<description> step/total (pct) metrics elapsed H:MM:SS left H:MM:SS``."""
        elapsed = self.clock() - self.began
        parts = [self.description]
        if self.total:
            parts.append(f"{self.completed}/{self.total} ({self.completed / self.total:.0%})")
        else:
            parts.append(str(self.completed))
        if self.info:
            parts.append(self.info)
        parts.append(f"elapsed {clock_text(elapsed)}")
        done_here = self.completed - self.start
        if self.total and done_here > 0:
            left = (self.total - self.completed) * elapsed / done_here
            parts.append(f"left {clock_text(left)}")
        return " ".join(parts)

    def report(self) -> None:
        self.last = self.clock()
        self.reported = (self.completed, self.description)
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """The closing line, unless the last line already said the same."""
        if self.final and self.reported != (self.completed, self.description):
            self.report()


class StepProgress:
    """One bar on stderr: ``update(metrics)`` advances a step, ``set(n)`` jumps to ``n``.

    ``total=None`` is a bar whose length is unknown (e.g. records read from a file). On a
    terminal it is a rich bar; elsewhere a :class:`LineProgress`."""

    def __init__(self, total: int | None, enabled: bool = True, start: int = 0,
                 description: str = "training", transient: bool = False) -> None:
        console = Console(stderr=True)
        self.enabled = enabled
        self.progress: Progress | None = None
        self.lines: LineProgress | None = None
        if not enabled:
            return
        if console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=console, transient=transient,
            )
            self.task = self.progress.add_task(description, total=total, completed=start, info="")
        else:
            # A transient bar leaves nothing behind on a terminal; in a log it reports while
            # it runs but adds no closing line (its result is printed anyway).
            self.lines = LineProgress(total, description, start=start, final=not transient)

    def __enter__(self) -> StepProgress:
        if self.progress is not None:
            self.progress.start()
        return self

    def update(self, rec: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, info="  ".join(metrics_text(rec).split()))
        elif self.lines is not None:
            self.lines.update(rec)

    def advance(self, k: int) -> None:
        """``k`` more steps done, without metrics (finished prompts, judged pairs)."""
        if self.progress is not None:
            self.progress.update(self.task, advance=k)
        elif self.lines is not None:
            self.lines.set(self.lines.completed + k)

    def set(self, completed: int | None = None, description: str | None = None) -> None:
        """Jump to ``completed`` and/or change the description."""
        if self.progress is not None:
            self.progress.update(self.task, completed=completed, description=description)
        elif self.lines is not None:
            self.lines.set(completed, description)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.progress is not None:
            self.progress.stop()
        elif self.lines is not None:
            self.lines.close()


def quiet_library_bars() -> None:
    """Turn off the tqdm bars of huggingface_hub and transformers (weight loading, shard
    writing): in a log they are carriage-return redraws, not lines. Set before those
    libraries load, the environment switch is enough; after, their own switches are used
    (nothing is imported here)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    hub = sys.modules.get("huggingface_hub.utils")
    if hub is not None:
        hub.disable_progress_bars()
    tf_logging = sys.modules.get("transformers.utils.logging")
    if tf_logging is not None:
        tf_logging.disable_progress_bar()


class Reporter:
    """What ``Context.progress`` holds: makes progress bars, or nothing when disabled.

    Disabled under ``--json`` (stdout must stay machine-readable; bars go to stderr anyway)
    and on non-zero ranks under torchrun. When stderr is not a terminal, the libraries'
    own bars are turned off (:func:`quiet_library_bars`), so a log holds only plain lines.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        if not Console(stderr=True).is_terminal:
            quiet_library_bars()

    def bar(self, total: int | None, description: str, start: int = 0,
            transient: bool = False) -> StepProgress:
        """A bar over ``total`` steps; use as a context manager and call ``update(metrics)``.
        ``transient`` bars disappear when done (for steps whose result is printed anyway)."""
        return StepProgress(total, enabled=self.enabled, start=start, description=description,
                            transient=transient)

    def cached(self, description: str, detail: str = "") -> None:
        """One line saying that ``description`` came from a cache (no bar, no 0/N)."""
        if not self.enabled:
            return
        text = f"{description} cached" + (f" ({detail})" if detail else "")
        console = Console(stderr=True)
        if console.is_terminal:
            console.print(text, highlight=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


def notice(text: str) -> None:
    """One line on stderr, flushed, even under ``--json`` (e.g. what an interrupted stage
    kept and how to continue)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()

