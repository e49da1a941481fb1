"""Users, sessions, CSRF, API keys and per-key rate limits.

Passwords are hashed with argon2id (slow on purpose). API keys are 32 random bytes, so a
plain SHA-256 of the key is enough to make a stolen table useless and keeps the per-request
check at microseconds; a key is found by its public prefix and compared in constant time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from prefline.base.errors import PreflineError
from prefline.store.collect_models import USER_ROLES, ApiKey, User, UserSession
from prefline.store.db import audit
from prefline.store.models import Annotator, utcnow

SESSION_COOKIE = "prefline_session"
SESSION_TTL = dt.timedelta(hours=12)
KEY_PREFIX_LEN = 8
_hasher = PasswordHasher()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- users and sessions


def create_user(session: Session, username: str, password: str, role: str = "annotator",
                actor: str = "cli") -> User:
    """Add a user (and the annotator row their labels are stored under)."""
    if role not in USER_ROLES:
        raise PreflineError(f"role must be one of {', '.join(USER_ROLES)}, got {role!r}",
                            field="role")
    if not username or len(username) > 100 or not username.replace("_", "").replace(
            "-", "").replace(".", "").isalnum():
        raise PreflineError("username must be 1-100 letters, digits, '.', '_' or '-'",
                            field="username")
    _check_new_password(password)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise PreflineError(f"user {username!r} already exists", field="username")
    annotator = session.scalar(select(Annotator).where(Annotator.name == username))
    if annotator is None:
        annotator = Annotator(name=username, kind="human", role=role)
        session.add(annotator)
        session.flush()
    user = User(username=username, role=role, password_hash=_hasher.hash(password),
                annotator_id=annotator.id, active=True)
    session.add(user)
    session.flush()
    audit(session, actor, "user.create", f"user:{username}", role=role)
    return user


def _check_new_password(password: str) -> None:
    if len(password) < 8:
        raise PreflineError("password must have at least 8 characters", field="password")


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise PreflineError(f"no user named {username!r}", field="username")
    return user


def set_user_active(session: Session, username: str, active: bool, actor: str = "cli") -> User:
    """Disable (or re-enable) a user; disabling also ends their sessions at once."""
    user = _user(session, username)
    user.active = active
    if not active:
        session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    audit(session, actor, "user.enable" if active else "user.disable", f"user:{username}")
    return user


def set_password(session: Session, username: str, password: str, actor: str = "cli") -> User:
    """Give a user a new password and end their sessions (a reset locks out whoever had it)."""
    _check_new_password(password)
    user = _user(session, username)
    user.password_hash = _hasher.hash(password)
    session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    audit(session, actor, "user.reset_password", f"user:{username}")
    return user


def check_password(session: Session, username: str, password: str) -> User | None:
    """The active user with this password, or None (same work done for unknown names)."""
    user = session.scalar(select(User).where(User.username == username))
    stored = user.password_hash if user is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    return user


_DUMMY_HASH = _hasher.hash("timing-equaliser-not-a-password")


def start_session(session: Session, user: User) -> tuple[str, str]:
    """Create a session; returns (cookie token, csrf token). Only the token hash is stored."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    # Expired sessions are swept at each login, so the table does not grow without bound.
    session.execute(delete(UserSession).where(UserSession.user_id == user.id,
                                              UserSession.expires_at < utcnow()))
    session.add(UserSession(token_hash=sha256(token), user_id=user.id, csrf_token=csrf,
                            expires_at=utcnow() + SESSION_TTL))
    return token, csrf


def session_user(session: Session, token: str | None) -> tuple[User, UserSession] | None:
    """The (user, session row) for a cookie token, if it is valid and not expired."""
    if not token:
        return None
    row = session.scalar(select(UserSession).where(UserSession.token_hash == sha256(token)))
    if row is None or row.expires_at < utcnow():
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return user, row


def end_session(session: Session, token: str) -> None:
    row = session.scalar(select(UserSession).where(UserSession.token_hash == sha256(token)))
    if row is not None:
        session.delete(row)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


# ---------------------------------------------------------------- API keys


def create_api_key(session: Session, name: str, rate_per_s: float = 50.0, burst: int = 200,
                   actor: str = "cli") -> str:
    """Create a key and return it in full; this is the only time it is ever visible."""
    if session.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
        raise PreflineError(f"an API key named {name!r} already exists", field="name")
    if rate_per_s <= 0 or burst < 1:
        raise PreflineError("rate must be > 0 and burst >= 1", field="rate")
    prefix = secrets.token_hex(KEY_PREFIX_LEN // 2)
    key = f"pk_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(name=name, prefix=prefix, key_hash=sha256(key), rate_per_s=rate_per_s,
                       burst=burst, revoked=False, created_by=actor))
    audit(session, actor, "api_key.create", f"api_key:{name}", prefix=prefix)
    return key


def revoke_api_key(session: Session, name_or_prefix: str, actor: str = "cli") -> None:
    key = session.scalar(select(ApiKey).where(
        (ApiKey.name == name_or_prefix) | (ApiKey.prefix == name_or_prefix)))
    if key is None:
        raise PreflineError(f"no API key named or prefixed {name_or_prefix!r}", field="key")
    key.revoked = True
    audit(session, actor, "api_key.revoke", f"api_key:{key.name}")


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    rate_per_s: float
    burst: int


class KeyCache:
    """Verified keys cached for ``ttl`` seconds so a hot ingest path skips the database.

    A revoked key stops working within ``ttl`` seconds.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, engine: Engine, ttl: float = 5.0) -> None:
        self.engine, self.ttl = engine, ttl
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._lock = threading.Lock()
        self._flights: dict[tuple[asyncio.AbstractEventLoop, str | None],
                            asyncio.Future[KeyInfo | None]] = {}

    def cached(self, key: str | None) -> KeyInfo | None | bool:
        """The cached answer for ``key`` (None: invalid), or False if it must be looked up."""
        if not key or not key.startswith("pk_") or key.count("_") < 2:
            return None
        with self._lock:
            hit = self._cache.get(sha256(key))
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return False

    def lookup(self, key: str | None) -> KeyInfo | None:
        """Check ``key`` against the database (blocking) and cache the answer."""
        hit = self.cached(key)
        if hit is not False:
            return hit  # type: ignore[return-value]
        assert key is not None
        digest = sha256(key)
        now = time.monotonic()
        info = self._load(key.split("_", 2)[1], digest)
        with self._lock:
            if len(self._cache) >= self.MAX_ENTRIES:  # random bad keys must not grow it forever
                self._cache.clear()
            self._cache[digest] = (now, info)
        return info

    async def shared_lookup(self, key: str | None) -> KeyInfo | None:
        """``lookup`` in a worker thread, one at a time per key: the requests that arrive
        while a key is being looked up wait for that lookup instead of starting their own.

        Under load, every request that arrived while an expired key was looked up used to
        start a lookup of its own, each a hand-off to a thread: a burst of them every
        ``ttl`` seconds. Shielded: a waiter that goes away does not cancel the others'.
        """
        slot = (asyncio.get_running_loop(), key)
        flight = self._flights.get(slot)
        if flight is None:
            flight = asyncio.ensure_future(run_in_threadpool(self.lookup, key))
            self._flights[slot] = flight
            flight.add_done_callback(lambda _: self._flights.pop(slot, None))
        return await asyncio.shield(flight)

    def _load(self, prefix: str, digest: str) -> KeyInfo | None:
        with Session(self.engine) as session:
            row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
            if row is None or row.revoked or not hmac.compare_digest(row.key_hash, digest):
                return None
            return KeyInfo(row.id, row.name, row.rate_per_s, row.burst)


class RateLimiter:
    """A token bucket per API key: ``rate`` tokens/s, at most ``burst`` saved up.

    A batch costs one token per event, so the limit is on events, not requests. The state
    is per server process (one uvicorn worker by default).
    """

    def __init__(self) -> None:
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: KeyInfo, cost: int = 1) -> float:
        """Spend ``cost`` tokens; returns 0 if allowed, else seconds to wait before retrying."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key.id, (float(key.burst), now))
            tokens = min(float(key.burst), tokens + (now - last) * key.rate_per_s)
            if cost > key.burst:
                return -1.0
            if tokens >= cost:
                self._buckets[key.id] = (tokens - cost, now)
                return 0.0
            self._buckets[key.id] = (tokens, now)
            return (cost - tokens) / key.rate_per_s
