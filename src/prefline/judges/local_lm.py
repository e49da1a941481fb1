"""A judge from any local causal LM: ask "A or B?" and read the next-token probabilities.

For each pair the model sees the question twice, with the responses in both orders, and we
read P("A") vs P("B") at the answer position (renormalised over the two letters). The order-
averaged probability that ``a`` is better is

    p_a = ( P(A | a first) + P(B | b first) ) / 2,

which is exactly symmetric (swapping a and b gives 1 − p_a) and cancels a constant preference
for a letter or a position. When the two orders disagree the verdict is a tie (position bias).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefline.base.errors import PreflineError
from prefline.formats.examples import as_messages, prompt_text
from prefline.generate.sampling import cpu_threads, encode_left, render_prompts
from prefline.judges.base import PairItem, PromptLike, Verdict, combine_orders, dir_fingerprint
from prefline.models.hub import load_causal_lm, resolve_model_path

LM_TEMPLATE = (
    "Which response to the user's prompt is better: more helpful, correct, concise, with no "
    "repetition or cut-off ending, refusing only clearly harmful requests?\n\n"
    "[Prompt]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
    "Answer with a single letter, A or B.")


class LocalLMJudge:
    """``lm:PATH`` (a folder, ``.gguf`` file or Hub id). ``max_response_tokens`` truncates
    each response before templating; ``batch_size`` counts sequences per forward."""

    name = "lm"
    both_orders = True

    def __init__(self, path: str, template: str | None = None, max_response_tokens: int = 384,
                 batch_size: int = 8, tie_band: float = 0.0) -> None:
        self.source = resolve_model_path(path)
        self.template = template or LM_TEMPLATE
        self.max_response_tokens, self.batch_size, self.tie_band = (
            max_response_tokens, max(1, batch_size), tie_band)
        local = Path(self.source)
        self._fingerprint = dir_fingerprint(local) if local.exists() else None
        self.model, self.tok = load_causal_lm(self.source, dtype="float32")
        self._letters = [self._letter_ids(c) for c in "AB"]

    def config(self) -> dict[str, Any]:
        return {"judge": "lm", "version": 1, "model": self.source,
                "weights_sha256": self._fingerprint, "template": self.template,
                "max_response_tokens": self.max_response_tokens, "tie_band": self.tie_band}

    def _letter_ids(self, letter: str) -> list[int]:
        """Token ids that start an answer of ``letter`` ("A" and " A" tokenise differently)."""
        ids = {self.tok(v, add_special_tokens=False)["input_ids"][0] for v in (letter, " " + letter)}
        return sorted(ids)

    def _clip(self, text: str) -> str:
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_response_tokens:
            return text
        return self.tok.decode(ids[:self.max_response_tokens]) + " [...]"

    def _render(self, prompt: PromptLike, a: str, b: str) -> str:
        question = self.template.format(prompt=prompt_text(as_messages(prompt)),
                                        a=self._clip(a), b=self._clip(b))
        return render_prompts(self.tok, [question])[0]

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
        texts = [t for p, a, b in items for t in (self._render(p, a, b), self._render(p, b, a))]
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
