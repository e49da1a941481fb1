"""The one decode path (``prefline.generate.decode``): the seeded inverse-CDF sampler draws
from the right distribution, the fast path (shared prefill + that sampler) samples exactly
what a teacher-forced forward pass says it should, greedy is identical on both paths, and a
completion depends on its seed alone."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from transformers import TopPLogitsWarper

from prefline.base.errors import PreflineError
from prefline.generate.backend import Sampling, cut_at_stop
from prefline.generate.decode import (
    BufferLayer,
    RowSampler,
    decode,
    inverse_cdf,
    loop_decode,
    row_seed,
)
from prefline.generate.hf_backend import HFBackend
from prefline.generate.sampling import encode_ids_left, generate
from prefline.models.tiny import tiny_causal_lm

PROMPTS = ["Hello there", "Write a longer question about the sea?", "Hi", "Tell me more"]


@pytest.fixture(scope="module")
def lm() -> tuple[Any, Any]:
    model, tok = tiny_causal_lm(seed=1)
    return model.eval(), tok


def test_inverse_cdf_picks_the_interval_of_u_and_never_a_zero_token() -> None:
    """Token t is drawn iff cdf[t-1] <= u·total < cdf[t]; zero-probability tokens (here
    also across the 256-token block boundary and the padding of V = 300) are never drawn."""
    probs = torch.zeros(6, 300)
    probs[:, [3, 255, 256, 299]] = torch.tensor([0.25, 0.25, 0.25, 0.25])
    u = torch.tensor([0.0, 0.2499, 0.25, 0.5, 0.75, 1.0 - 1e-12], dtype=torch.float64)
    assert inverse_cdf(probs, u).tolist() == [3, 3, 255, 256, 299, 299]


def _frequencies(logits: torch.Tensor, temperature: float, top_p: float, draws: int) -> Any:
    sampler = RowSampler(range(draws), temperature, top_p)
    out = sampler(torch.zeros(draws, 1, dtype=torch.long), logits.expand(draws, -1).clone())
    assert torch.isin(out, torch.tensor([0.0, -math.inf])).all()
    return torch.bincount(out.argmax(-1), minlength=logits.shape[-1]).double() / draws


@pytest.mark.parametrize(("temperature", "top_p"), [(0.7, 1.0), (1.3, 0.8)])
def test_row_sampler_draws_from_the_tempered_nucleus(temperature: float, top_p: float) -> None:
    """Monte Carlo (4,000 draws, one per seed): frequencies within 4.5 standard errors of
    softmax(logits / T) cut to HF's top-p nucleus, and nothing outside the nucleus."""
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    scaled = logits / temperature
    kept = TopPLogitsWarper(top_p)(torch.zeros(1, 1, dtype=torch.long), scaled.clone())
    expected = torch.softmax(kept, -1)[0].double()
    freq = _frequencies(logits, temperature, top_p, 4000)
    se = (expected * (1 - expected) / 4000).sqrt()
    assert (freq[expected == 0] == 0).all()
    assert ((freq - expected).abs() <= 4.5 * se + 1e-12).all(), (freq, expected)


def test_fast_decode_samples_what_a_full_forward_pass_prescribes(lm: tuple[Any, Any]) -> None:
    """Shared prefill + KV cache + RowSampler: replaying each row's uniforms against the
    logits of one unpadded forward pass over prompt + completion reproduces every token."""
    model, tok = lm
    rows = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    ids, mask = encode_ids_left(rows, tok.pad_token_id)
    k, temperature, stops = 3, 1.1, [tok.eos_token_id]
    seeds = [row_seed(5, 0, i, j) for i in range(len(rows)) for j in range(k)]
    new, _ = decode(model, ids, mask, k=k, max_new_tokens=6, temperature=temperature,
                    top_p=1.0, stop_ids=stops, pad_id=tok.pad_token_id, seeds=seeds)
    assert new.shape[0] == len(rows) * k
    for r, seed in enumerate(seeds):
        done = cut_at_stop(new[r].tolist(), stops)
        prompt = rows[r // k]
        with torch.no_grad():
            logits = model(torch.tensor([prompt + done])).logits[0, len(prompt) - 1:-1]
        gen = torch.Generator().manual_seed(seed)
        u = torch.cat([torch.rand(1, generator=gen, dtype=torch.float64) for _ in done])
        want = inverse_cdf(torch.softmax(logits.float() / temperature, -1), u)
        assert want.tolist() == done


def test_rows_that_finish_leave_the_batch_without_changing_any_row(lm: tuple[Any, Any]) -> None:
    """With a third of the vocabulary as stop tokens rows finish at different steps; dropping
    them from the batch (and their cache rows) as soon as one finishes gives the same tokens
    as never dropping, and pads every row after its stop token."""
    model, tok = lm
    rows = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    ids, mask = encode_ids_left(rows, tok.pad_token_id)
    stops = list(range(0, model.config.vocab_size, 3))
    seeds = [row_seed(2, 0, i, j) for i in range(len(rows)) for j in range(3)]
    out = []
    for drop in (0.0, 2.0):  # drop a row at once / never (2.0: no batch is that many rows)
        with torch.inference_mode():
            new, _ = loop_decode(model, ids, mask, k=3, max_new_tokens=10, drop=drop,
                                 sampler=RowSampler(seeds, 1.0), stop_ids=stops,
                                 pad_id=tok.pad_token_id)
        out.append(new.tolist())
    assert out[0] == out[1]
    lengths = {len(cut_at_stop(r, stops)) for r in out[0]}
    assert len(lengths) >= 3, lengths  # rows really finished at different steps
    for r in out[0]:
        assert all(t == tok.pad_token_id for t in r[len(cut_at_stop(r, stops)):])


def test_every_decode_step_writes_the_preallocated_cache(lm: tuple[Any, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """After the prefill, each step of each layer writes into a BufferLayer (no cache is
    concatenated), so the speed-up of the preallocated cache is really taken."""
    model, tok = lm
    calls: list[int] = []
    update = BufferLayer.update

    def counted(self: BufferLayer, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return update(self, *args, **kwargs)

    monkeypatch.setattr(BufferLayer, "update", counted)
    rows = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    ids, mask = encode_ids_left(rows, tok.pad_token_id)
    with torch.inference_mode():
        new, _ = loop_decode(model, ids, mask, k=2, max_new_tokens=5, sampler=None,
                             stop_ids=[], pad_id=tok.pad_token_id)
    assert new.shape == (len(rows) * 2, 5)
    assert len(calls) == model.config.num_hidden_layers * 4  # steps 2..5 go through the model


def test_greedy_is_the_same_on_both_paths(lm: tuple[Any, Any]) -> None:
    """Temperature 0: gen_opt fast and none give the same responses (nothing is shared and
    no sampler runs when there is one response per prompt)."""
    model, tok = lm
    out = [generate(model, tok, PROMPTS, n=2, max_new_tokens=8, temperature=0.0,
                    batch_size=8, threads=None, gen_opt=opt) for opt in ("fast", "none")]
    assert out[0] == out[1]


def test_a_completion_depends_on_its_seed_alone(lm: tuple[Any, Any]) -> None:
    """The training engine: the same prompt and seed give the same completion alone or in a
    batch with other prompts (left padding and shared prefill do not change it)."""
    model, tok = lm
    engine = HFBackend(loaded=(model, tok), device="cpu", threads=None)
    rows = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    s = Sampling(n=2, max_new_tokens=7, temperature=1.0)
    stops = [tok.eos_token_id]
    seeds = [row_seed(1, 3, i, j) for i in range(len(rows)) for j in range(2)]
    together = engine.sample_tokens(rows, s, seeds, stops)
    alone = engine.sample_tokens(rows[1:2], s, seeds[2:4], stops)
    assert together[2:4] == alone
    assert all(1 <= len(c) <= 7 for c in together)
    with pytest.raises(PreflineError, match="built on"):
        engine.sync_weights(tiny_causal_lm(seed=2)[0])


def test_gen_opt_is_validated(lm: tuple[Any, Any]) -> None:
    with pytest.raises(PreflineError, match="gen_opt"):
        HFBackend(loaded=lm, device="cpu", gen_opt="turbo")
