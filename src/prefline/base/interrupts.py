"""Interrupts: SIGINT and SIGTERM as exceptions, and what an interrupted command kept.

SIGINT raises :class:`KeyboardInterrupt` (Python's default); :func:`sigterm_raises` makes
SIGTERM (``kill``, a scheduler, ``timeout``) raise :class:`Terminated` the same way, so one
``except INTERRUPTS`` path saves what can be saved and re-raises. The command line turns
them into exit codes 130 and 143 (128 + signal number, as shells report a signalled
process) and one line on stderr built from the :class:`Kept` record of the interrupted
work.

Why a process-wide record rather than a field on the exception: typer turns a
KeyboardInterrupt into a bare exit code, dropping the exception. Signals are process-wide
too, and one command runs per process.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt is for SIGINT (a BaseException, so that
    ``except Exception`` cleanup code does not swallow it)."""


INTERRUPTS: tuple[type[BaseException], ...] = (KeyboardInterrupt, Terminated)
"""What ``except`` catches to handle either signal."""


def exit_code(exc: BaseException) -> int:
    """130 for SIGINT, 143 for SIGTERM (128 + the signal number)."""
    return 143 if isinstance(exc, Terminated) else 130


def signal_name(exc: BaseException) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _in_main_thread() -> bool:
    # signal.signal works only in the main thread; elsewhere signals cannot reach us anyway.
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Terminated`; the old handler comes back after."""
    if not _in_main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on them as the handlers that
    were in force would have (raise, ignore, or die).

    For work that must not stop half-way, like an optimizer step and its log line: an
    interrupt inside the block lands right after it."""
    if not _in_main_thread():
        yield
        return
    got: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        got.append(signum)

    sigs: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, hold) for s in sigs}
    try:
        yield
    finally:
        for s in sigs:
            signal.signal(s, old[s] if old[s] is not None else signal.SIG_DFL)
        for s in dict.fromkeys(got):
            _deliver(s, old[s])


def _deliver(signum: int, handler: Any) -> None:
    if handler == signal.SIG_IGN:
        return
    if callable(handler):
        handler(signum, None)
    else:  # SIG_DFL (or unknown): let the default action happen now
        os.kill(os.getpid(), signum)


@dataclass(frozen=True)
class Kept:
    """What a long command has kept so far, for the line an interrupt prints."""

    what: str
    """Where it stopped and what is saved, e.g. ``at step 10 of 30; checkpoint saved in
    RUN/checkpoints/step-10``."""
    run_folder: Path | None = None
    """The folder ``--out`` must name to continue (added to the command when it had none)."""
    resume_flag: str | None = "--resume"
    """The flag that continues the work (None: running the same command again does)."""


_kept: list[Kept] = []


def keep(record: Kept) -> None:
    """Say what the running command has kept (replaces the previous record)."""
    _kept[:] = [record]


def kept() -> Kept | None:
    """The last :func:`keep` record of this process, if any."""
    return _kept[0] if _kept else None


def forget() -> None:
    """Clear the record (the command line does this before each command)."""
    _kept.clear()
