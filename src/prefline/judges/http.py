"""A judge that asks any OpenAI-compatible chat-completions server (vLLM, llama.cpp server,
Ollama, hosted APIs) which of two responses is better.

Position bias: every pair is asked in both orders; when the two answers disagree the judge
followed the position, not the content, and the pair is recorded as a tie.

Failure policy (what a caller can rely on):

- transport failures — refused connections, timeouts, HTTP 408/429/5xx — are retried with
  exponential backoff (``backoff * 2**attempt`` s); when retries run out the run stops with a
  PreflineError naming the endpoint: a dead judge must not silently fill the store with ties;
- other HTTP errors (401, 404, 400: wrong key, URL or model) fail at once with PreflineError;
- a reply whose verdict cannot be parsed yields a tie with confidence 0 marked
  ``details["parse_error"]``; such verdicts are not stored and not cached, so a re-run asks
  again. If only one order is unparseable the other order's verdict is kept at half confidence.

Replies are cached on disk under ``kind_dir("judges")/http`` keyed by the judge's config (URL,
model, template, sampling settings) and the exact request, so re-judging costs nothing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from prefline.base.errors import PreflineError
from prefline.base.hashing import content_hash
from prefline.formats.examples import as_messages, prompt_text
from prefline.generate.openai_http import OpenAIClient, ReplyCache, endpoint_url
from prefline.judges.base import PairItem, PromptLike, Verdict, combine_orders

DEFAULT_CONSTITUTION = (
    "Prefer the response that answers the user's request correctly, helpfully and concisely; "
    "that refuses clearly harmful requests but does not refuse harmless ones that merely sound "
    "risky; that follows any requested format; and that has no repetition, invented dialogue "
    "turns or cut-off ending. Do not prefer a response just because it is longer.")
DEFAULT_TEMPLATE = (
    "You are an impartial judge comparing two assistant responses to the same user prompt.\n"
    "{constitution}\n\n[User prompt]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
    "Explain your reasoning in one or two sentences, then give your verdict on the last line "
    "as exactly one of: [[A]] if A is better, [[B]] if B is better, [[C]] for a tie.")
AGREED_CONFIDENCE = 0.9  # chat APIs give no probabilities; agreeing orders is strong evidence

_TOKEN = {"a": "a", "b": "b", "c": "tie", "tie": "tie", "draw": "tie", "equal": "tie",
          "1": "a", "2": "b", "response a": "a", "response b": "b", "assistant a": "a",
          "assistant b": "b", "both": "tie", "neither": "tie"}


def parse_verdict(text: str) -> str | None:
    """'a', 'b' or 'tie' from a judge's reply, or None when no verdict can be found.

    Understands ``[[A]]``/``[[B]]``/``[[C]]``, JSON (``{"winner": "B"}``), "Answer: A",
    "Verdict - tie", "Response B is better", and a bare "A"/"B"; the last marker wins.
    """
    found = re.findall(r"\[\[\s*(a|b|c|tie)\s*\]\]", text, flags=re.I)
    if found:
        return _TOKEN[found[-1].lower()]
    for blob in reversed(re.findall(r"\{[^{}]*\}", text)):
        try:
            obj = json.loads(blob)
        except ValueError:
            continue
        for key in ("winner", "choice", "verdict", "answer", "preferred", "better"):
            val = str(obj.get(key, "")).strip().lower() if isinstance(obj, dict) else ""
            if val in _TOKEN:
                return _TOKEN[val]
    labelled = re.findall(r"(?:answer|verdict|winner|choice|preferred|better response)\**\s*(?:is)?\s*"
                          r"[:=\-]?\s*\**\s*\(?(?:response |assistant )?(a|b|c|tie)\b\)?",
                          text, flags=re.I)
    if labelled:
        return _TOKEN[labelled[-1].lower()]
    better = re.findall(r"\b(?:response|assistant|output) (a|b) is (?:the )?(?:better|preferred|superior)",
                        text, flags=re.I)
    if better:
        return better[-1].lower()
    bare = text.strip().strip(".*`'\"()").lower()
    return _TOKEN.get(bare) if bare in ("a", "b", "tie", "c") else None


def chat_url(base_url: str) -> str:
    """Accept ``http://host:port``, ``.../v1`` or the full ``.../v1/chat/completions``."""
    return endpoint_url(base_url, "/chat/completions")


class HttpJudge:
    """``openai:URL[#model]``. ``api_key_env`` names the environment variable holding the key
    (never the key itself, so configs and logs never contain it)."""

    name = "openai"
    both_orders = True

    def __init__(self, base_url: str, model: str = "default", api_key_env: str | None = None,
                 template: str | None = None, constitution: str | None = None,
                 temperature: float = 0.0, max_tokens: int = 512, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.5, concurrency: int = 4,
                 cache: bool = True) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise PreflineError(f"judge URL must start with http:// or https://, got {base_url!r}",
                                field="judge")
        self.url, self.model = chat_url(base_url), model
        self.template = template or DEFAULT_TEMPLATE
        self.constitution = constitution or DEFAULT_CONSTITUTION
        for slot in ("{prompt}", "{a}", "{b}"):
            if slot not in self.template:
                raise PreflineError(f"judge template must contain {slot}", field="template")
        self.temperature, self.max_tokens = temperature, max_tokens
        self.timeout, self.retries, self.backoff = timeout, max(0, retries), backoff
        self.concurrency, self.cache = max(1, concurrency), cache
        self.api_key_env = api_key_env
        if api_key_env and not os.environ.get(api_key_env):
            raise PreflineError(f"environment variable {api_key_env} (the judge's API key) is not set",
                                field="api_key_env")
        self._client = OpenAIClient(self.url, api_key_env=api_key_env, timeout=timeout,
                                    retries=retries, backoff=backoff, what="judge endpoint")
        self._replies = ReplyCache("judges", "http", enabled=cache)

    def config(self) -> dict[str, Any]:
        """What determines the verdicts (not timeouts, retries or the key)."""
        return {"judge": "openai", "version": 1, "url": self.url, "model": self.model,
                "template": self.template, "constitution": self.constitution,
                "temperature": self.temperature, "max_tokens": self.max_tokens}

    def judge(self, prompt: PromptLike, a: str, b: str) -> Verdict:
        return self.judge_many([(prompt, a, b)])[0]

    def rate(self, prompt: PromptLike, response: str) -> dict[str, float]:
        raise PreflineError("the HTTP judge is pairwise only; use judge(prompt, a, b)")

    def judge_many(self, items: Sequence[PairItem],
                   on_done: Callable[[int], None] | None = None) -> list[Verdict]:
        """Judge pairs concurrently (``concurrency`` requests in flight), both orders each."""
        out: list[Verdict | None] = [None] * len(items)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._judge_one, *item): i for i, item in enumerate(items)}
            try:
                for fut in as_completed(futures):
                    out[futures[fut]] = fut.result()
                    if on_done is not None:
                        on_done(1)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return [v for v in out if v is not None]

    def _judge_one(self, prompt: PromptLike, a: str, b: str) -> Verdict:
        first = self._one_order(prompt, a, b)
        second = self._one_order(prompt, b, a).swapped()
        return combine_orders(first, second)

    def _one_order(self, prompt: PromptLike, a: str, b: str) -> Verdict:
        text = self.template.format(constitution=self.constitution,
                                    prompt=prompt_text(as_messages(prompt)), a=a, b=b)
        messages = [{"role": "user", "content": text}]
        key = content_hash({"config": self.config(), "messages": messages})
        reply = self._cached(key)
        if reply is None:
            reply = self._post(messages)
            choice = parse_verdict(reply)
            if choice is not None and self.cache:
                self._store(key, reply)
        else:
            choice = parse_verdict(reply)
        if choice is None:
            return Verdict("tie", 0.0, f"unparseable judge reply: {reply[:200]!r}",
                           {"parse_error": True})
        return Verdict(choice, AGREED_CONFIDENCE, reply.strip()[-500:])

    def _post(self, messages: list[dict[str, str]]) -> str:
        return _content(self._client.post({"model": self.model, "messages": messages,
                                           "temperature": self.temperature,
                                           "max_tokens": self.max_tokens}))

    def _cached(self, key: str) -> str | None:
        found = self._replies.get(key)
        return str(found["reply"]) if found is not None and "reply" in found else None

    def _store(self, key: str, reply: str) -> None:
        self._replies.put(key, {"reply": reply})


def _content(reply: Any) -> str:
    """The assistant text of a chat-completions reply; '' for a body of the wrong shape
    (which then fails verdict parsing and is recorded as unparseable)."""
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""
