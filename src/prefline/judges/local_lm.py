"""A judge from any local causal LM: ask "A or B?" and read the next-token probabilities.

For each pair the model sees the question twice, with the responses in both orders, and we
read P("A") vs P("B") at the answer position (renormalised over the two letters). The order-
averaged probability that ``a`` is better is

    p_a = ( P(A | a first) + P(B | b first) ) / 2,

which is exactly symmetric (swapping a and b gives 1 − p_a) and cancels a constant preference
for a letter or a position. When the two orders disagree the verdict is a tie (position bias).

``backend``: ``hf`` (default) runs the model in-process and reads the exact next-token
distribution. Any other generation backend (``vllm``, ``openai:URL``; see
docs/generation.md) is asked for one greedy token with its top-20 log-probs, and P("A"),
P("B") are read from those: exact too whenever both letters are among the 20 most likely
tokens (a letter outside them counts as probability 0; neither: 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.formats.examples import Messages, as_messages, prompt_text
from prefline.generate.backend import Backend, Sampling, parse_backend
from prefline.generate.backends import make_backend
from prefline.generate.sampling import cpu_threads, encode_left, render_prompts
from prefline.judges.base import PairItem, PromptLike, Verdict, combine_orders, dir_fingerprint
from prefline.models.hub import load_causal_lm, resolve_model_path

LM_TEMPLATE = (
    "Which response to the user's prompt is better: more helpful, correct, concise, with no "
    "repetition or cut-off ending, refusing only clearly harmful requests?\n\n"
    "[Prompt]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
    "Answer with a single letter, A or B.")
TOP_LOGPROBS = 20
"""Alternatives asked of a non-hf backend at the answer position (OpenAI's API allows 20)."""
CHARS_PER_TOKEN = 4
"""Clipping responses without a tokenizer (non-hf backends): about 4 characters a token."""


class LocalLMJudge:
    """``lm:PATH`` (a folder, ``.gguf`` file or Hub id; with an ``openai:`` backend, the model
    name sent to the server). ``max_response_tokens`` truncates each response before
    templating; ``batch_size`` counts sequences per forward (``hf``); ``backend`` is a
    generation backend spec (module docstring)."""

    name = "lm"
    both_orders = True

    def __init__(self, path: str, template: str | None = None, max_response_tokens: int = 384,
                 batch_size: int = 8, tie_band: float = 0.0, backend: str = "hf") -> None:
        self.template = template or LM_TEMPLATE
        self.max_response_tokens, self.batch_size, self.tie_band = (
            max_response_tokens, max(1, batch_size), tie_band)
        self.backend_spec = backend
        self.remote: Backend | None = None
        if parse_backend(backend)[0] != "hf":
            self.source, self._fingerprint = path, None
            self.remote = make_backend(backend, path, precision="fp32")
            return
        self.source = resolve_model_path(path)
        local = Path(self.source)
        self._fingerprint = dir_fingerprint(local) if local.exists() else None
        self.model, self.tok = load_causal_lm(self.source, dtype="float32")
        self._letters = [self._letter_ids(c) for c in "AB"]

    def config(self) -> dict[str, Any]:
        cfg = {"judge": "lm", "version": 1, "model": self.source,
               "weights_sha256": self._fingerprint, "template": self.template,
               "max_response_tokens": self.max_response_tokens, "tie_band": self.tie_band}
        if self.remote is not None:  # hf verdicts keep the config they always had
            cfg["backend"] = self.remote.config()
        return cfg

    def _letter_ids(self, letter: str) -> list[int]:
        """Token ids that start an answer of ``letter`` ("A" and " A" tokenise differently)."""
        ids = {self.tok(v, add_special_tokens=False)["input_ids"][0] for v in (letter, " " + letter)}
        return sorted(ids)

    def _clip(self, text: str) -> str:
        if self.remote is not None:
            keep = self.max_response_tokens * CHARS_PER_TOKEN
            return text if len(text) <= keep else text[:keep] + " [...]"
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_response_tokens:
            return text
        return self.tok.decode(ids[:self.max_response_tokens]) + " [...]"

    def _question(self, prompt: PromptLike, a: str, b: str) -> Messages:
        return as_messages(self.template.format(prompt=prompt_text(as_messages(prompt)),
                                                a=self._clip(a), b=self._clip(b)))

    def _render(self, prompt: PromptLike, a: str, b: str) -> str:
        return render_prompts(self.tok, [self._question(prompt, a, b)])[0]

    def remote_prob_first_letter(self, questions: Sequence[Messages]) -> list[float]:
        """P("A") / (P("A") + P("B")) from the backend's top log-probs of the first token."""
        assert self.remote is not None
        outs = self.remote.generate(questions, Sampling(max_new_tokens=1,
                                                        top_logprobs=TOP_LOGPROBS))
        probs = []
        for [c] in outs:
            top = c.top_logprobs[0] if c.top_logprobs else {}
            mass = [sum(math.exp(lp) for tok, lp in top.items() if tok.strip() == letter)
                    for letter in "AB"]
            probs.append(mass[0] / (mass[0] + mass[1]) if sum(mass) > 0 else 0.5)
        return probs

    def prob_first_letter(self, texts: Sequence[str]) -> list[float]:
        """P("A") / (P("A") + P("B")) at the next token of each rendered text."""
        import torch

        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        out: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            enc = encode_left(self.tok, list(texts[i:i + self.batch_size]), pad)
            with torch.inference_mode():
                logits = self.model(**enc).logits[:, -1, :].float()
            lp = torch.log_softmax(logits, dim=-1)
            pair = torch.stack([torch.logsumexp(lp[:, ids], dim=-1) for ids in self._letters], -1)
            out.extend(torch.softmax(pair, dim=-1)[:, 0].tolist())
        return out

    def rate(self, prompt: PromptLike, response: str) -> dict[str, float]:
        raise PreflineError("the local LM judge is pairwise only; use judge(prompt, a, b)")

    def judge(self, prompt: PromptLike, a: str, b: str) -> Verdict:
        return self.judge_many([(prompt, a, b)])[0]

    def judge_many(self, items: Sequence[PairItem],
                   on_done: Callable[[int], None] | None = None) -> list[Verdict]:
        if self.remote is not None:
            probs = self.remote_prob_first_letter(
                [q for p, a, b in items for q in (self._question(p, a, b),
                                                  self._question(p, b, a))])
        else:
            texts = [t for p, a, b in items for t in (self._render(p, a, b),
                                                      self._render(p, b, a))]
            with cpu_threads(0):
                probs = self.prob_first_letter(texts)
        verdicts = []
        for k in range(len(items)):
            p1, p2 = probs[2 * k], 1.0 - probs[2 * k + 1]  # both: P(a better)
            verdicts.append(combine_orders(self._order(p1), self._order(p2), (p1 + p2) / 2))
        if on_done is not None:
            on_done(len(items))
        return verdicts

    def _order(self, p_a: float) -> Verdict:
        if abs(p_a - 0.5) <= self.tie_band:
            return Verdict("tie", 1.0 - abs(p_a - 0.5) * 2, f"P(a better) {p_a:.3f}")
        choice = "a" if p_a > 0.5 else "b"
        conf = max(p_a, 1.0 - p_a)
        return Verdict(choice, conf, f"LM answer probability favours {choice} ({conf:.3f})")
