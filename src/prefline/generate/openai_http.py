"""Talking to an OpenAI-compatible server: one retrying client and one reply cache, shared by
the ``openai:`` generation backend and the ``openai:`` judge (:mod:`prefline.judges.http`).

Failure policy (what a caller can rely on):

- transport failures — refused connections, timeouts, HTTP 408/429/5xx — are retried with
  exponential backoff (``backoff * 2**attempt`` s); when retries run out a PreflineError names
  the endpoint (a dead server must never turn into empty answers);
- other HTTP errors (401, 404, 400: wrong key, URL or model) fail at once with PreflineError.

Replies are cached on disk under one kind folder of :mod:`prefline.base.cache`, one JSON file
per key (the content hash of what determines the reply), written atomically so concurrent
writers of one key leave one whole file.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from prefline.base.cache import kind_dir
from prefline.base.errors import PreflineError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def endpoint_url(base_url: str, path: str = "/chat/completions") -> str:
    """Accept ``http://host:port``, ``.../v1`` or the full ``.../v1/<path>``."""
    base = base_url.rstrip("/")
    if base.endswith(path):
        return base
    return base + (path if base.endswith("/v1") else "/v1" + path)


class OpenAIClient:
    """POST JSON to one endpoint with retries. ``api_key_env`` names the environment variable
    holding the key (never the key itself, so configs and logs never contain it); ``what``
    names the server in errors (``judge endpoint``, ``generation server``)."""

    def __init__(self, url: str, *, api_key_env: str | None = None, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.5, what: str = "endpoint") -> None:
        if not url.startswith(("http://", "https://")):
            raise PreflineError(f"URL must start with http:// or https://, got {url!r}",
                                field="url")
        if api_key_env and not os.environ.get(api_key_env):
            raise PreflineError(f"environment variable {api_key_env} (the API key) is not set",
                                field="api_key_env")
        self.url, self.api_key_env, self.what = url, api_key_env, what
        self.timeout, self.retries, self.backoff = timeout, max(0, retries), backoff
        self._client: Any = None
        self._lock = threading.Lock()

    def post(self, body: dict[str, Any]) -> Any:
        """The decoded JSON reply (or ``None`` for a 200 whose body is not JSON)."""
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout)
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(self.api_key_env, '')}"
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                resp = self._client.post(self.url, json=body, headers=headers)
            except httpx.TimeoutException:
                problem = f"no reply within {self.timeout} s"
                continue
            except httpx.TransportError as exc:
                problem = f"cannot connect ({type(exc).__name__})"
                continue
            if resp.status_code in RETRY_STATUS:
                problem = f"HTTP {resp.status_code}"
                continue
            if resp.status_code != 200:
                raise PreflineError(f"{self.what} {self.url} answered HTTP {resp.status_code}: "
                                    f"{resp.text[:200]!r}")
            try:
                return resp.json()
            except ValueError:
                return None
        tries = self.retries + 1
        raise PreflineError(f"{self.what} {self.url} failed after {tries} "
                            f"attempt{'s' if tries > 1 else ''}: {problem}")


class ReplyCache:
    """JSON objects on disk by key under ``kind_dir(kind)/sub`` (``enabled=False``: none)."""

    def __init__(self, kind: str, sub: str, enabled: bool = True) -> None:
        self.kind, self.sub, self.enabled = kind, sub, enabled

    def _path(self, key: str) -> Path:
        return kind_dir(self.kind) / self.sub / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        try:
            value = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if not self.enabled:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(value, fh)
        os.replace(tmp, path)  # atomic: concurrent writers of one key write the same content
