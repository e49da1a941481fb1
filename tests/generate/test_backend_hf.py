"""The ``hf`` generation backend on the tiny causal model: the protocol's shapes, token ids
that decode to the text, log-probs that match a forward pass, and spec validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prefline.base.errors import PreflineError
from prefline.generate.backend import Sampling, parse_backend
from prefline.generate.backends import make_backend
from prefline.generate.sampling import generate, render_prompts
from prefline.judges.run import JudgeConfig

PROMPTS = ["Hello there", [{"role": "user", "content": "Write a longer question?"}], "Hi"]


@pytest.fixture(scope="module")
def backend(tiny_causal_dir: Path):  # type: ignore[no-untyped-def]
    return make_backend("hf", str(tiny_causal_dir), device="cpu", precision="fp32", batch_size=4)


def test_completions_match_the_text_sampler(backend) -> None:  # type: ignore[no-untyped-def]
    """Same prompts, seed and batch size: the backend's texts are ``generate``'s, n per prompt,
    in input order; each completion's token ids decode to its text."""
    s = Sampling(n=2, max_new_tokens=8, temperature=1.0, top_p=0.9, seed=3)
    out = backend.generate(PROMPTS, s)
    assert [len(cs) for cs in out] == [2, 2, 2]
    texts = generate(backend.lm, backend.tokenizer, PROMPTS, n=2, max_new_tokens=8,
                     temperature=1.0, top_p=0.9, seed=3, batch_size=4)
    assert [[c.text for c in cs] for cs in out] == texts
    for c in (c for cs in out for c in cs):
        assert 1 <= len(c.token_ids) <= 8 and c.finish_reason in ("stop", "length")
        assert backend.tokenizer.decode(list(c.token_ids), skip_special_tokens=True).strip() == c.text
        assert c.logprobs is None


def test_logprobs_are_the_models_own(backend) -> None:  # type: ignore[no-untyped-def]
    """Per-token log-probs equal a teacher-forced forward pass over prompt + completion
    (raw distribution, not the temperature-scaled one), and top-k holds the sampled token's
    alternatives."""
    s = Sampling(n=1, max_new_tokens=6, temperature=0.7, seed=1, logprobs=True, top_logprobs=3)
    [[c]] = backend.generate([PROMPTS[0]], s)
    assert c.logprobs is not None and c.top_logprobs is not None
    assert len(c.logprobs) == len(c.token_ids) == len(c.top_logprobs)
    head = backend.tokenizer(render_prompts(backend.tokenizer, [PROMPTS[0]])[0],
                             add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + list(c.token_ids)])
    with torch.inference_mode():
        logp = torch.log_softmax(backend.lm(input_ids=ids).logits.float(), -1)[0]
    want = [logp[len(head) - 1 + t, tok].item() for t, tok in enumerate(c.token_ids)]
    assert c.logprobs == pytest.approx(want, abs=1e-4)
    # keyed by token text, as OpenAI's API does: byte tokens decoding alike share one entry
    assert all(1 <= len(top) <= 3 and max(top.values()) >= lp - 1e-6
               for top, lp in zip(c.top_logprobs, c.logprobs, strict=True))


def test_greedy_is_one_answer(backend) -> None:  # type: ignore[no-untyped-def]
    out = backend.generate(PROMPTS, Sampling(n=3, max_new_tokens=5))
    assert all(len({c.text for c in cs}) == 1 for cs in out)
    assert backend.config()["backend"] == "hf" and backend.config()["dtype"] == "float32"


def test_specs_are_checked_before_anything_loads() -> None:
    assert parse_backend("openai:http://127.0.0.1:8080/v1#m") == (
        "openai", "http://127.0.0.1:8080/v1#m")
    assert parse_backend("hf") == ("hf", "")
    for bad, why in (("tgi", "unknown generation backend"), ("openai:", "needs a URL"),
                     ("openai:127.0.0.1:8080", "needs a URL"), ("hf:x", "takes no argument")):
        with pytest.raises(PreflineError, match=why) as err:
            parse_backend(bad)
        assert err.value.field == "backend"
    with pytest.raises(PreflineError, match="max_new_tokens"):
        Sampling(max_new_tokens=0)


def test_backend_field_on_the_judge_config(tmp_path: Path) -> None:
    """``--backend`` drives the local-LM judge only; any other judge refuses it by name."""
    ok = JudgeConfig(judge="lm:model", in_file=tmp_path / "c.jsonl", out=tmp_path / "p.jsonl",
                     backend="openai:http://127.0.0.1:8080/v1")
    assert ok.backend.startswith("openai:")
    with pytest.raises(PreflineError, match="local LM judge") as err:
        JudgeConfig(judge="rules", in_file=tmp_path / "c.jsonl", out=tmp_path / "p.jsonl",
                    backend="vllm")
    assert err.value.field == "backend"
