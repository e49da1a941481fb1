"""The ``openai:`` generation backend against a REAL OpenAI-compatible server: llama-cpp-python's
``python -m llama_cpp.server`` on loopback serving the embedded SmolLM2-135M-Instruct GGUF
(``llama-cpp-python[server]`` is in the dev extra; ``make setup`` builds it once, pip caches
the wheel). No fake: if the server cannot start, these tests fail (they never skip).

Parity with ``hf``: both engines read the same GGUF file, but ``hf`` dequantises its Q4_1
weights to float and multiplies in float32, while llama.cpp multiplies the Q4_1 blocks against
8-bit-quantised activations. The two next-token distributions therefore differ slightly, and a
greedy continuation flips where two tokens are nearly tied (measured: for "What is the capital
of France?" the first token is a near-tie, hf picks "The", llama.cpp "L"). The parity test
therefore compares each answer up to hf's first near-tie (top-2 gap under :data:`TIE_NATS`)
and requires one prompt to agree for at least :data:`PREFIX_WORDS` words: a wrong chat
template, stop token or decoding would show at once.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from operator import sub
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.cli_runner import run_cli

from prefline.base.errors import PreflineError
from prefline.evaluate.policy import compare
from prefline.evaluate.policy_config import PolicyEvalConfig
from prefline.generate.backend import Completion, Sampling
from prefline.generate.backends import make_backend
from prefline.generate.hf_backend import HFBackend
from prefline.generate.io import PromptRow
from prefline.generate.openai_backend import OpenAIBackend
from prefline.judges.local_lm import LocalLMJudge
from prefline.judges.principles import PrincipleJudge
from prefline.models.embedded import smollm2_gguf

PROMPTS = ["What is the capital of France?", "Name three primary colours.",
           [{"role": "user", "content": "Write one sentence about the sea."}]]
PREFIX_WORDS = 4
"""Words of hf's greedy answer that at least one prompt must pin down before a near-tie."""
TIE_NATS = 0.5
"""Top-2 log-prob gap under which a greedy choice counts as a near-tie: measured on this
GGUF, llama.cpp's first-token log-probs differ from hf's by up to ~0.4 nats (for "What is the
capital of France?" hf has "The" -1.88 vs "L" -1.97, llama.cpp "L" -1.94 vs "The" -2.29)."""
HF_TOKENIZER: list[Any] = []
ALIAS = "smollm2"
PLAIN = {"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}
"""llama.cpp's own sampling defaults (repeat penalty 1.1, top-k 40, min-p 0.05) switched off:
plain greedy / nucleus sampling as hf does it. Its repeat-penalty sampler also carries state
from one request to the next, which made seeded requests unrepeatable."""
START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT/v1``: llama.cpp's server on the embedded GGUF (fails, never
    skips, when llama-cpp-python is missing or the server does not come up)."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"llama-cpp-python[server] is not installed ({exc}); run `make setup` or "
                    "`.venv/bin/pip install 'llama-cpp-python[server]'`")
    port = _free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()),
           "--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "2048", "--n_threads", "1", "--verbose", "False",
           "--logits_all", "True"]  # log-probs need every position's logits kept
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n"
                            f"{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within {START_TIMEOUT_S} s:\n"
                            f"{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def hf() -> HFBackend:
    backend = make_backend("hf", str(smollm2_gguf()), device="cpu", precision="fp32",
                           batch_size=4)
    assert isinstance(backend, HFBackend)
    return backend


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLINE_CACHE", str(tmp_path / "cache"))


def _sure_prefix(c: Completion) -> str:
    """hf's greedy text up to the first near-tie: the position where its two most likely
    tokens are within :data:`TIE_NATS` (there llama.cpp's slightly different numbers may
    pick the other one, see the module docstring)."""
    assert c.top_logprobs is not None
    k = next((t for t, top in enumerate(c.top_logprobs)
              if len(top) > 1 and sub(*sorted(top.values(), reverse=True)[:2]) < TIE_NATS),
             len(c.token_ids))
    return str(HF_TOKENIZER[0].decode(list(c.token_ids[:k]), skip_special_tokens=True)).strip()


def test_greedy_parity_with_hf(server: str, hf: HFBackend) -> None:
    """Same model, greedy: each server answer begins with hf's answer up to hf's first
    near-tie, and at least one prompt is decided for several words (no vacuous pass)."""
    HF_TOKENIZER[:] = [hf.tokenizer]
    remote = make_backend(f"openai:{server}#{ALIAS}", cache=False, extra_body=PLAIN)
    mine = [cs[0] for cs in hf.generate(PROMPTS, Sampling(max_new_tokens=24, top_logprobs=2))]
    theirs = [cs[0] for cs in remote.generate(PROMPTS, Sampling(max_new_tokens=24))]
    sure = [_sure_prefix(m) for m in mine]
    for m, t, prefix in zip(mine, theirs, sure, strict=True):
        assert t.text and "<|im_end|>" not in t.text
        assert t.text.startswith(prefix), (prefix, m.text, t.text)
        assert 0 < t.n_tokens <= 24 and t.finish_reason in ("stop", "length")
    assert max(len(p.split()) for p in sure) >= PREFIX_WORDS, sure


def test_sampling_seeded_concurrent_and_cached(server: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """n=3 samples per prompt, 2 requests in flight, answered in input order with log-probs;
    asked again, the disk cache answers without the server."""
    backend = make_backend(f"openai:{server}#{ALIAS}", concurrency=2, extra_body=PLAIN)
    assert isinstance(backend, OpenAIBackend)
    s = Sampling(n=3, max_new_tokens=12, temperature=1.0, top_p=0.95, seed=5, logprobs=True)
    done: list[int] = []
    first = backend.generate(PROMPTS[:2], s, on_done=done.append)
    assert [len(cs) for cs in first] == [3, 3] and sum(done) == 2
    assert all(c.logprobs and all(lp <= 0 for lp in c.logprobs) for cs in first for c in cs)
    assert len({c.text for c in first[0]}) > 1  # three draws, not one repeated
    cached = list((tmp_path / "cache" / "generations" / "openai").rglob("*.json"))
    assert len(cached) == 6

    def offline(body: object) -> object:
        raise AssertionError("asked the server although the reply was cached")

    monkeypatch.setattr(backend._client, "post", offline)
    assert backend.generate(PROMPTS[:2], s) == first
    # No "same seed, same text" check against llama.cpp itself: it reuses the KV cache of the
    # previous request's common prefix, so a request's numbers (and samples) depend on what
    # was asked before it. The disk cache is what makes a rerun repeatable.


def test_generate_cli_with_openai_backend(server: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("What is the capital of France?\nSay hello.\n")
    out = tmp_path / "cands.jsonl"
    code, stdout, err = run_cli(["generate", "--prompts", str(prompts), "--out", str(out),
                                 "--backend", f"openai:{server}#{ALIAS}", "--n", "2",
                                 "--max-new-tokens", "16", "--no-store", "--json"], capsys)
    assert code == 0, err
    result = json.loads(stdout)
    assert result["responses"] == 4 and result["model"] == ALIAS and result["new_tokens"] > 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(r["responses"]) for r in lines] == [2, 2]
    assert lines[0]["gen_params"]["backend"]["url"] == f"{server}/chat/completions"


def test_lm_judge_through_the_server_agrees_with_hf(server: str) -> None:
    """The LM judge's P(a better) from the server's top-20 log-probs is close to the exact
    in-process one (same weights, see the module docstring for the numeric difference)."""
    items = [("What is 2+2?", "4.", "It is five, I think"), ("Say hi.", "Hello there!", "hi")]
    local = LocalLMJudge(str(smollm2_gguf()))
    remote = LocalLMJudge(ALIAS, backend=f"openai:{server}#{ALIAS}")
    assert remote.config()["backend"]["model"] == ALIAS
    for v, w in zip(local.judge_many(items), remote.judge_many(items), strict=True):
        assert w.details["p_a"] == pytest.approx(v.details["p_a"], abs=0.05)


def test_dead_server_fails_clearly() -> None:
    backend = make_backend(f"openai:http://127.0.0.1:{_free_port()}/v1", retries=1,
                           backoff=0.01, cache=False)
    with pytest.raises(PreflineError, match="generation server .* failed after 2 attempts: cannot "
                                        "connect"):
        backend.generate(["hi"], Sampling(max_new_tokens=2))



def test_eval_policy_compare_through_the_server(server: str) -> None:
    """``eval policy``'s comparison with both policies served: the same model on both sides
    samples the same greedy answers (every pair a tie, win rate 0.5) and the KL, which needs
    both models in-process, is reported as not measured."""
    cfg = PolicyEvalConfig(policy=ALIAS, baseline=ALIAS, backend=f"openai:{server}",
                           temperature=0.0, max_new_tokens=12, n_boot=100)
    rows = [PromptRow(str(i), [{"role": "user", "content": p}])
            for i, p in enumerate(["Say hello.", "Name a fruit."])]
    side = make_backend(cfg.backend, ALIAS, extra_body=PLAIN)
    result = compare(side, side, rows, PrincipleJudge(), cfg)
    assert result.kl is None and result.judge.win_rate == 0.5 and result.n_prompts == 2
