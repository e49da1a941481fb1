"""Brute-force brakes for the web app: failure throttles with lockout, single-use tokens.

Both live in the server process (``prefline serve`` runs one worker), like the API rate
limiter: a restart forgets them, which only ever lets a locked-out client in earlier.
Memory is bounded so that an attacker spraying names, addresses or tokens cannot grow them
without limit.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass
class _Entry:
    failures: int  # failures in the current window
    window_start: float
    locked_until: float = 0.0
    strikes: int = 0  # lockouts in a row; each doubles the next one


class Throttle:
    """Counts failures per key (an account, an address); ``limit`` failures within
    ``window`` seconds lock the key for ``lockout`` seconds, doubling with each lockout in
    a row up to ``max_lockout``. A success (:meth:`clear`) or a quiet spell resets it.
    """

    MAX_ENTRIES = 50_000

    def __init__(self, limit: int, window: float, lockout: float, max_lockout: float = 3600.0,
                 clock: Clock = time.monotonic) -> None:
        if limit < 1 or window <= 0 or lockout <= 0:
            raise ValueError("limit, window and lockout must be positive")
        self.limit, self.window, self.lockout = limit, window, lockout
        self.max_lockout, self.clock = max(max_lockout, lockout), clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` may try again (0: it may try now)."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            wait = entry.locked_until - now if entry is not None else 0.0
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, key: str) -> int:
        """Record a failure; returns :meth:`retry_after` (non-zero once the key is locked)."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._quiet(entry, now):
                self._make_room(now)
                entry = self._entries[key] = _Entry(0, now)
            elif now - entry.window_start > self.window:
                entry.failures, entry.window_start = 0, now
            entry.failures += 1
            if entry.failures >= self.limit:
                length = min(self.lockout * 2 ** entry.strikes, self.max_lockout)
                entry.locked_until = now + length
                entry.strikes += 1
                entry.failures, entry.window_start = 0, now
        return self.retry_after(key)

    def clear(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _quiet(self, entry: _Entry, now: float) -> bool:
        """No lockout pending and no failure for long enough to forget the strikes."""
        return now > entry.locked_until and now - entry.window_start > self.window + self.max_lockout

    def _make_room(self, now: float) -> None:
        if len(self._entries) < self.MAX_ENTRIES:
            return
        for key in [k for k, e in self._entries.items() if self._quiet(e, now)]:
            del self._entries[key]
        if len(self._entries) >= self.MAX_ENTRIES:  # still full: forget the oldest half
            for key in list(self._entries)[: self.MAX_ENTRIES // 2]:
                del self._entries[key]


class SingleUseTokens:
    """Random tokens that are valid once, for ``ttl`` seconds (the login form's CSRF token:
    a token captured from one form cannot be replayed)."""

    MAX_ENTRIES = 50_000

    def __init__(self, ttl: float = 7200.0, clock: Clock = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        now = self.clock()
        with self._lock:
            if len(self._expiry) >= self.MAX_ENTRIES:
                live = {t: e for t, e in self._expiry.items() if e > now}
                # Still full of live tokens (someone is farming the login page): the oldest
                # half go, and their forms answer "expired, log in again".
                self._expiry = dict(list(live.items())[len(live) // 2:]) \
                    if len(live) >= self.MAX_ENTRIES else live
            self._expiry[token] = now + self.ttl
        return token

    def consume(self, token: str | None) -> bool:
        """True once for a token this object issued and that has not expired."""
        if not token:
            return False
        with self._lock:
            expiry = self._expiry.pop(token, None)
        return expiry is not None and expiry > self.clock()
