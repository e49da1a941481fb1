"""The ``openai:URL[#model]`` generation backend: any OpenAI-compatible chat-completions
server (vLLM's ``vllm serve``, TGI, llama.cpp's server, ``python -m llama_cpp.server``,
hosted APIs).

Each completion is one request with ``n=1`` (llama.cpp and TGI accept nothing else), the j-th
of a prompt seeded with ``seed * 1_000_003 + j``, so a server that honours ``seed`` gives the
same samples again; greedy (temperature 0) asks once and repeats the answer n times. At most
``concurrency`` requests are in flight (the server batches them: vLLM and llama.cpp schedule
concurrent requests together). Retries and failures follow
:mod:`prefline.generate.openai_http`; complete replies are cached on disk under
``kind_dir("generations")/openai`` keyed by the URL, model and the exact request, so asking
again costs nothing (``cache=False`` to always ask).

Token ids come back only from servers that return them (vLLM with ``return_token_ids``,
sent when ``token_ids=True``); elsewhere ``Completion.token_ids`` is empty and a caller that
needs ids re-tokenises the text with the policy's tokenizer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.formats.examples import as_messages
from prefline.generate.backend import Completion, PromptLike, Sampling
from prefline.generate.openai_http import OpenAIClient, ReplyCache, endpoint_url


class OpenAIBackend:
    """``url``: ``http://host:port``, ``.../v1`` or the full chat-completions URL, optionally
    ``#model``; ``model`` is the model name sent when the URL names none (default
    ``default``). ``api_key_env`` names the environment variable holding the key.
    ``extra_body``: server-specific fields added to every request (and to the cache key),
    e.g. ``{"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}`` for llama.cpp, whose own
    defaults (repeat penalty 1.1, top-k 40, min-p 0.05) differ from plain sampling."""

    name = "openai"

    def __init__(self, url: str, model: str | None = None, *, concurrency: int = 8,
                 retries: int = 3, timeout: float = 300.0, backoff: float = 0.5,
                 cache: bool = True, api_key_env: str | None = None,
                 token_ids: bool = False, extra_body: dict[str, Any] | None = None) -> None:
        base, _, named = url.partition("#")
        self.url = endpoint_url(base, "/chat/completions")
        self.model = named or model or "default"
        self.concurrency, self.token_ids = max(1, concurrency), token_ids
        self.extra_body = dict(extra_body or {})
        self._client = OpenAIClient(self.url, api_key_env=api_key_env, timeout=timeout,
                                    retries=retries, backoff=backoff, what="generation server")
        self._replies = ReplyCache("generations", "openai", enabled=cache)

    def config(self) -> dict[str, Any]:
        return {"backend": "openai", "url": self.url, "model": self.model}

    def generate(self, prompts: Sequence[PromptLike], sampling: Sampling,
                 on_done: Callable[[int], None] | None = None) -> list[list[Completion]]:
        asks = sampling.n if sampling.temperature > 0 else 1
        got: list[list[Completion | None]] = [[None] * asks for _ in prompts]
        left = [asks] * len(prompts)
        lock = threading.Lock()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self.complete, p, sampling, j): (i, j)
                       for i, p in enumerate(prompts) for j in range(asks)}
            try:
                for fut in as_completed(futures):
                    i, j = futures[fut]
                    got[i][j] = fut.result()
                    with lock:
                        left[i] -= 1
                        finished = left[i] == 0
                    if finished and on_done is not None:
                        on_done(1)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return [[c for c in cs if c is not None] * (sampling.n // asks) for cs in got]

    def request(self, prompt: PromptLike, sampling: Sampling, j: int = 0) -> dict[str, Any]:
        """The chat-completions body for the ``j``-th completion of ``prompt``."""
        body: dict[str, Any] = {
            "model": self.model, "messages": as_messages(prompt),
            "max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
            "top_p": sampling.top_p, "seed": sampling.seed * 1_000_003 + j, "n": 1}
        if sampling.logprobs or sampling.top_logprobs:
            body.update(logprobs=True, top_logprobs=sampling.top_logprobs)
        if self.token_ids:
            body["return_token_ids"] = True
        return {**body, **self.extra_body}

    def complete(self, prompt: PromptLike, sampling: Sampling, j: int = 0) -> Completion:
        """One completion (from the cache when this exact request was answered before)."""
        body = self.request(prompt, sampling, j)
        key = content_hash({"url": self.url, "body": body})
        choice = self._replies.get(key)
        if choice is None:
            reply = self._client.post(body)
            choice = _first_choice(reply, self.url)
            choice["n_tokens"] = _usage_tokens(reply)
            if choice.get("finish_reason") in ("stop", "length"):  # whole answers only
                self._replies.put(key, choice)
        return _completion(choice, sampling)


def _first_choice(reply: Any, url: str) -> dict[str, Any]:
    try:
        choice = reply["choices"][0]
        if not isinstance(choice["message"]["content"], str):
            raise TypeError
    except (KeyError, IndexError, TypeError):
        raise PreflineError(f"generation server {url} sent a reply with no "
                            f"choices[0].message.content: {str(reply)[:200]!r}") from None
    return dict(choice)


def _completion(choice: dict[str, Any], sampling: Sampling) -> Completion:
    """A chat-completions choice as a Completion (log-probs from ``logprobs.content``)."""
    steps = (choice.get("logprobs") or {}).get("content") or []
    lps = tuple(float(s["logprob"]) for s in steps) if sampling.logprobs else None
    tops = (tuple({t["token"]: float(t["logprob"]) for t in s.get("top_logprobs") or []}
                  for s in steps) if sampling.top_logprobs else None)
    ids = tuple(int(t) for t in choice.get("token_ids") or ())
    return Completion(choice["message"]["content"].strip(), ids, lps, tops,
                      choice.get("finish_reason"), int(choice.get("n_tokens") or len(ids)))


def _usage_tokens(reply: Any) -> int:
    """``usage.completion_tokens`` of a reply (0 when the server sends no usage)."""
    try:
        return int(reply["usage"]["completion_tokens"])
    except (KeyError, TypeError, ValueError):
        return 0
