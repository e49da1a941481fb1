"""Serving registered policies: route a chat request to an arm, generate, log it.

A request names a flag (the OpenAI ``model`` field); the flag's canary split picks the arm
(:func:`prefline.rollout.flags.choose_arm`), the arm's artifact generates — in process
for small models, or on an upstream OpenAI-compatible server (vLLM, ...) named per
artifact — and the response is logged before it is acknowledged: its text as a
``responses`` row (the id the feedback API takes) and a ``served_responses`` row with the
model version, request id, latency, pseudonymous user, segment and arm. A personal policy
(``prefline train personal-dpo``: one base, a global adapter and per-segment adapters) is
served by :class:`PersonalBackend`, which runs each request with the adapter its segment
routes to; the response names that adapter. Every
``Guardrails.every`` requests of a flag its canary is evaluated (and rolled back or
promoted) in a background thread.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.formats.examples import Messages, prompt_text
from prefline.formats.records import prompt_key
from prefline.generate.sampling import (
    cpu_threads,
    encode_left,
    generate,
    load_policy,
    render_prompts,
    stop_token_ids,
)
from prefline.models.hub import load_causal_lm
from prefline.rollout.flags import FlagCache, choose_arm, pseudonym
from prefline.rollout.telemetry import Guardrails, guard
from prefline.store.ingest import response_hash
from prefline.store.models import Artifact, Prompt, Response, utcnow
from prefline.store.rollout_models import ServedResponse
from prefline.train.personal_manifest import GLOBAL, adapters, is_personal, read_manifest, route


@dataclass(frozen=True)
class ChatRequest:
    flag: str
    messages: Messages
    user: str
    segment: str | None = None
    segment_attrs: dict[str, str] | None = None
    """Declared segment attributes (issue 14), logged with the response."""
    max_tokens: int = 64
    temperature: float = 0.7
    seed: int = 0


@dataclass(frozen=True)
class Served:
    request_id: str
    response_id: int | None
    text: str
    artifact_id: int
    model_version: str
    arm: str
    latency_ms: float
    error: str | None = None
    adapter: str | None = None
    """The personal policy's adapter that served (``global`` or ``key=value``); None for a
    plain policy."""


class Backend(Protocol):
    def complete(self, req: ChatRequest) -> str:
        """The assistant's reply to ``req.messages``."""

    def stream(self, req: ChatRequest) -> Iterator[str]:
        """The reply in pieces as they are generated."""


class LocalBackend:
    """A policy folder loaded in this process (small models; one generation at a time).

    ``threads``: torch threads per generation. One by default: a small model gains nothing
    from intra-op threads, and on a busy machine they cost more in contention than they
    save (the tiny test model: 160 ms with all threads, 12 ms with one, on 2 shared cores).
    """

    def __init__(self, path: str, threads: int | None = 1) -> None:
        self.threads = threads
        self.model, self.tokenizer = load_policy(path, precision="fp32")
        self.model.eval()
        self._lock = threading.Lock()

    def adapter_for(self, req: ChatRequest) -> str | None:
        """The adapter that serves ``req``: None, a plain policy has none."""
        return None

    def _prepare(self, req: ChatRequest) -> None:
        """Set the model up for ``req`` (called holding the lock): nothing to do here."""

    def complete(self, req: ChatRequest) -> str:
        with self._lock:
            self._prepare(req)
            return generate(self.model, self.tokenizer, [req.messages], n=1,
                            max_new_tokens=req.max_tokens, temperature=req.temperature,
                            seed=req.seed, batch_size=1, threads=self.threads)[0][0]

    def stream(self, req: ChatRequest) -> Iterator[str]:
        """Tokens as ``generate`` produces them (transformers' TextIteratorStreamer; the
        generation runs in its own thread, holding the model's lock)."""
        import torch
        from transformers import TextIteratorStreamer

        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        enc = encode_left(tok, render_prompts(tok, [req.messages]), pad_id)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True,
                                        timeout=600)
        sample = req.temperature > 0
        kwargs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                  "max_new_tokens": req.max_tokens, "do_sample": sample,
                  "temperature": req.temperature if sample else None,
                  "top_k": 0 if sample else None, "pad_token_id": pad_id,
                  "eos_token_id": stop_token_ids(self.model, tok), "streamer": streamer}

        def run() -> None:
            with self._lock, cpu_threads(self.threads), torch.inference_mode():
                self._prepare(req)
                torch.manual_seed(req.seed)
                self.model.generate(**kwargs)

        threading.Thread(target=run, daemon=True).start()
        yield from streamer


class PersonalBackend(LocalBackend):
    """A personal policy folder (:mod:`prefline.train.personal_manifest`): the base model
    loaded once with every adapter; each request switches to the adapter its segment routes
    to (the segment's own, else the global one) while it holds the model's lock."""

    def __init__(self, path: str, threads: int | None = 1) -> None:
        self.threads = threads
        self.manifest = read_manifest(path)
        folders = adapters(self.manifest)
        # peft names the first adapter "default"; internal names avoid the characters a
        # segment value may hold and a module name may not (".").
        self._names = {name: "default" if name == GLOBAL else f"segment{i}"
                       for i, name in enumerate(folders)}
        self.model, self.tokenizer = load_causal_lm(Path(path) / folders[GLOBAL],
                                                    merge_adapter=False)
        for name, folder in folders.items():
            if name != GLOBAL:
                self.model.load_adapter(str(Path(path) / folder), adapter_name=self._names[name])
        self.model.eval()
        self._lock = threading.Lock()

    def adapter_for(self, req: ChatRequest) -> str:
        return route(self.manifest, req.segment, req.segment_attrs)

    def _prepare(self, req: ChatRequest) -> None:
        self.model.set_adapter(self._names[self.adapter_for(req)])


class UpstreamBackend:
    """An OpenAI-compatible server (``base_url`` ends in ``/v1``) serving ``model``."""

    def __init__(self, base_url: str, model: str, timeout: float = 60.0) -> None:
        self.model = model
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def complete(self, req: ChatRequest) -> str:
        resp = self.client.post("/chat/completions", json={
            "model": self.model, "messages": req.messages, "max_tokens": req.max_tokens,
            "temperature": req.temperature, "seed": req.seed})
        resp.raise_for_status()
        return str(resp.json()["choices"][0]["message"]["content"])

    def stream(self, req: ChatRequest) -> Iterator[str]:
        """The upstream's own server-sent events, passed on as they arrive."""
        with self.client.stream("POST", "/chat/completions", json={
                "model": self.model, "messages": req.messages, "max_tokens": req.max_tokens,
                "temperature": req.temperature, "seed": req.seed, "stream": True}) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                data = line.removeprefix("data:").strip()
                if not line.startswith("data:") or data == "[DONE]":
                    continue
                for choice in json.loads(data).get("choices", []):
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield str(piece)


def model_version(art: Artifact) -> str:
    """What the logs and the response's ``model`` field call an artifact."""
    return f"{art.name or art.kind}@artifact:{art.id}"


class PolicyServer:
    """Routes, generates and logs chat requests for one store (one per app)."""

    def __init__(self, engine: Engine, upstreams: dict[int, str] | None = None,
                 loader: Callable[[Artifact], Backend] | None = None) -> None:
        self.engine = engine
        self.flags = FlagCache(engine)
        self.upstreams = dict(upstreams or {})
        self._loader = loader
        self._backends: dict[int, tuple[Backend, str]] = {}
        self._counts: dict[str, int] = {}
        self._guarding: set[str] = set()
        self._lock = threading.Lock()

    def backend(self, artifact_id: int) -> tuple[Backend, str]:
        with self._lock:
            hit = self._backends.get(artifact_id)
        if hit is not None:
            return hit
        with Session(self.engine) as s:
            art = s.get(Artifact, artifact_id)
            if art is None:
                raise PreflineError(f"artifact {artifact_id} is not in the registry")
            s.expunge(art)
        if self._loader is not None:
            backend: Backend = self._loader(art)
        elif artifact_id in self.upstreams:
            backend = UpstreamBackend(self.upstreams[artifact_id], art.path)
        elif is_personal(art.path):
            backend = PersonalBackend(art.path)
        else:
            backend = LocalBackend(art.path)
        with self._lock:
            self._backends.setdefault(artifact_id, (backend, model_version(art)))
            return self._backends[artifact_id]

    def route(self, req: ChatRequest) -> tuple[str, int, Backend, str, dict[str, Any]]:
        """``(arm, artifact id, backend, model version, guardrail settings)`` for a request."""
        flag = self.flags.get(req.flag)
        if flag is None:
            raise PreflineError(f"no served model named {req.flag!r}; known: "
                                f"{', '.join(self.flags.names()) or 'none'}", field="model")
        arm, artifact_id = choose_arm(flag, req.user, req.segment)
        backend, version = self.backend(artifact_id)
        return arm, artifact_id, backend, version, flag.guardrails

    def chat(self, req: ChatRequest) -> Served:
        """Route, generate, log (committed before returning), and watch the canary."""
        arm, artifact_id, backend, version, rails = self.route(req)
        adapter = served_adapter(backend, req)
        start = time.perf_counter()
        text, error = "", None
        try:
            text = backend.complete(req)
        except Exception as exc:  # noqa: BLE001 - an arm's failure is telemetry, not a crash
            error = f"{type(exc).__name__}: {exc}"[:2000]
        latency = (time.perf_counter() - start) * 1000
        served = log_served(self.engine, req, text, error, artifact_id, version, arm, latency,
                            adapter=adapter)
        self._maybe_guard(req.flag, rails)
        return served

    def stream(self, req: ChatRequest) -> tuple[str, str, str, Iterator[str | Served]]:
        """Route now (so a bad model name fails before any byte is sent); returns
        ``(request id, arm, model version, pieces)`` where the pieces are the reply's text
        as generated and, last, the :class:`Served` record, logged once the reply is
        complete (latency = time to the last token)."""
        arm, artifact_id, backend, version, rails = self.route(req)
        adapter = served_adapter(backend, req)
        request_id = uuid.uuid4().hex

        def pieces() -> Iterator[str | Served]:
            start = time.perf_counter()
            text, error = [], None
            try:
                for piece in backend.stream(req):
                    text.append(piece)
                    yield piece
            except Exception as exc:  # noqa: BLE001 - logged as the arm's error
                error = f"{type(exc).__name__}: {exc}"[:2000]
            latency = (time.perf_counter() - start) * 1000
            yield log_served(self.engine, req, "".join(text), error, artifact_id, version,
                             arm, latency, request_id=request_id, adapter=adapter)
            self._maybe_guard(req.flag, rails)

        return request_id, arm, version, pieces()

    def _maybe_guard(self, flag: str, settings: dict[str, Any]) -> None:
        """Every ``every`` requests, evaluate the canary in a background thread (one per
        flag at a time), so the guardrail query never adds to a request's latency."""
        every = Guardrails.of(settings).every
        with self._lock:
            self._counts[flag] = n = self._counts.get(flag, 0) + 1
            if n % every or flag in self._guarding:
                return
            self._guarding.add(flag)
        threading.Thread(target=self._guard, args=(flag,), daemon=True).start()

    def _guard(self, flag: str) -> None:
        try:
            if guard(self.engine, flag)["done"] is not None:
                self.flags.refresh()
        except PreflineError:
            # Someone changed the canary between the evaluation and the action (an admin's
            # rollback, another server's guardrail): their change stands; the next
            # evaluation sees it.
            self.flags.refresh()
        finally:
            with self._lock:
                self._guarding.discard(flag)


def served_adapter(backend: Backend, req: ChatRequest) -> str | None:
    """The adapter of a personal policy that serves ``req``; None for any other backend."""
    pick = getattr(backend, "adapter_for", None)
    return pick(req) if pick is not None else None


def log_served(engine: Engine, req: ChatRequest, text: str, error: str | None,
               artifact_id: int, version: str, arm: str, latency_ms: float,
               request_id: str | None = None, adapter: str | None = None) -> Served:
    """Write the prompt, the response and the served row in one transaction.

    The response's identity includes the request id: two users who get the same text got
    two completions, and each one's feedback must land on its own row. Core statements, not
    the ORM: this is on every request's path (the ORM cost ~4x the CPU).
    """
    request_id = request_id or uuid.uuid4().hex
    p_hash = prompt_key(req.messages)
    now = utcnow()
    with engine.begin() as conn:
        prompt_id = conn.scalar(select(Prompt.id).where(Prompt.content_hash == p_hash))
        if prompt_id is None:  # a concurrent request may insert the same prompt first
            dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
            conn.execute(dialect.insert(Prompt.__table__).on_conflict_do_nothing(
                index_elements=["content_hash"]), {
                "content_hash": p_hash, "text": prompt_text(req.messages),
                "messages": req.messages, "context": None, "tags": ["served"],
                "created_at": now})
            prompt_id = conn.scalar(select(Prompt.id).where(Prompt.content_hash == p_hash))
        response_id = None
        if error is None:
            response_id = conn.scalar(insert(Response).returning(Response.id), {
                "content_hash": content_hash([response_hash(p_hash, text, req.flag, version),
                                              request_id]),
                "prompt_id": prompt_id, "text": text, "model": req.flag,
                "model_version": version, "created_at": now,
                "gen_params": {"max_tokens": req.max_tokens, "temperature": req.temperature,
                               "seed": req.seed, "request_id": request_id,
                               **({"adapter": adapter} if adapter else {})}})
        conn.execute(insert(ServedResponse), {
            "request_id": request_id, "response_id": response_id, "artifact_id": artifact_id,
            "model_version": version, "flag": req.flag, "arm": arm,
            "user_hash": pseudonym(req.user), "segment": req.segment,
            "segment_attrs": req.segment_attrs or None,
            "latency_ms": latency_ms, "error": error, "created_at": now})
    return Served(request_id, response_id, text, artifact_id, version, arm, latency_ms, error,
                  adapter)


__all__ = ["Backend", "ChatRequest", "LocalBackend", "PersonalBackend", "PolicyServer", "Served",
           "UpstreamBackend", "log_served", "model_version", "served_adapter"]
