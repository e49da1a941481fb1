"""The KL estimators of :mod:`prefline.evaluate.kl` against the exact KL of two tiny
autoregressive models (vocabulary 5, 3 new tokens): all 5³ = 125 responses are enumerated,
so the sequence-level KL is a finite sum we can compute outright."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from prefline.evaluate.kl import kl_figures, response_kls, sampling_logprobs, token_kl
from prefline.evaluate.policy import policy_kls
from prefline.models.tiny import tiny_causal_lm

V, STEPS, T, TOP_P = 5, 3, 0.7, 0.8
SEQS = torch.tensor(list(itertools.product(range(V), repeat=STEPS)))  # [125, 3]


class TinyLM(torch.nn.Module):
    """Next-token logits from the whole prefix: a position table plus a bag of seen tokens."""

    def __init__(self, seed: int, scale: float) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.start = torch.randn(V, generator=g, dtype=torch.float64) * scale
        self.mix = torch.randn(STEPS, V, V, generator=g, dtype=torch.float64) * scale

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """``[n, STEPS]`` token ids → ``[n, STEPS, V]`` logits predicting each of them."""
        onehot = torch.nn.functional.one_hot(seqs, V).to(torch.float64)
        seen = torch.cat([torch.zeros_like(onehot[:, :1]), onehot.cumsum(1)[:, :-1]], dim=1)
        return self.start + torch.einsum("ntv,tvw->ntw", seen, self.mix)


A, B = TinyLM(seed=1, scale=1.5), TinyLM(seed=2, scale=1.5)
LOGITS_A, LOGITS_B = A(SEQS), B(SEQS)
MASK = torch.ones(SEQS.shape, dtype=torch.long)


def seq_logp(logp: torch.Tensor) -> torch.Tensor:
    """log P(y) of each enumerated response from per-position log-probs [125, STEPS, V]."""
    return logp.gather(-1, SEQS[..., None]).squeeze(-1).sum(-1)


def exact_kl(la: torch.Tensor, lb: torch.Tensor) -> tuple[float, torch.Tensor]:
    """KL of the two sequence distributions, summed over all 125 responses, and P_A(y)."""
    pa, lpa, lpb = seq_logp(la).exp(), seq_logp(la), seq_logp(lb)
    keep = pa > 0
    return float((pa[keep] * (lpa[keep] - lpb[keep])).sum()), pa


def b_under_a_nucleus(la: torch.Tensor, temperature: float) -> torch.Tensor:
    """B's tempered probabilities zeroed outside A's nucleus and renormalised (as logs)."""
    pb = torch.softmax(LOGITS_B / temperature, -1) * torch.isfinite(la)
    return (pb / pb.sum(-1, keepdim=True)).log()


def test_transform_matches_hugging_face_sampling() -> None:
    scores = LOGITS_A.reshape(-1, V).float()
    warped = TopPLogitsWarper(TOP_P)(None, TemperatureLogitsWarper(T)(None, scores))
    ours = sampling_logprobs(scores, T, TOP_P)
    assert torch.equal(torch.isfinite(ours), torch.isfinite(warped))
    torch.testing.assert_close(ours, torch.log_softmax(warped, -1))
    assert (~torch.isfinite(ours)).any()  # the nucleus really cuts tokens in this setting


@pytest.mark.parametrize(("temperature", "top_p", "field"), [(T, TOP_P, "sampling"),
                                                            (1.0, 1.0, "t1")])
def test_expected_estimate_equals_the_enumerated_kl(temperature: float, top_p: float,
                                                    field: str) -> None:
    la = sampling_logprobs(LOGITS_A, temperature, top_p)
    lb = b_under_a_nucleus(la, temperature)
    exact, pa = exact_kl(la, lb)
    assert abs(float(pa.sum()) - 1.0) < 1e-12 and exact > 0.1
    per_response = torch.tensor(getattr(response_kls(LOGITS_A, LOGITS_B, MASK, temperature,
                                                     top_p), field), dtype=torch.float64)
    # E_{y~A}[Σ_t KL_t(y<t)]: the estimator's expectation, weighted by A's probabilities.
    assert float((pa * per_response).sum()) == pytest.approx(exact, abs=1e-6)
    # Every per-response value is ≥ 0, and its variance is below the sampled log-ratio's.
    assert float(per_response.min()) >= 0
    log_ratio = seq_logp(la) - seq_logp(lb)
    keep = pa > 0
    var_exact = float((pa * (per_response - exact) ** 2).sum())
    var_ratio = float((pa[keep] * (log_ratio[keep] - exact) ** 2).sum())
    assert var_exact < var_ratio


def test_monte_carlo_mean_within_its_standard_error() -> None:
    la = sampling_logprobs(LOGITS_A, T, TOP_P)
    exact, pa = exact_kl(la, b_under_a_nucleus(la, T))
    per_response = torch.tensor(response_kls(LOGITS_A, LOGITS_B, MASK, T, TOP_P).sampling,
                                dtype=torch.float64)
    sd = math.sqrt(float((pa * (per_response - exact) ** 2).sum()))
    n = 4000
    draws = torch.multinomial(pa, n, replacement=True, generator=torch.Generator().manual_seed(0))
    # Sampling whole responses from A = drawing enumerated ones with P_A(y); run the estimator
    # on the drawn responses' own logits. 4 standard errors: a 6e-5 chance of a false failure.
    sums = response_kls(LOGITS_A[draws], LOGITS_B[draws], MASK[draws], T, TOP_P)
    got = kl_figures(sums)["kl"]
    assert got is not None and abs(got - exact) < 4 * sd / math.sqrt(n)


def test_both_truncated_kl_is_infinite_exactly_where_nuclei_miss() -> None:
    la = sampling_logprobs(LOGITS_A, T, TOP_P)
    both = token_kl(la, sampling_logprobs(LOGITS_B, T, TOP_P))
    sums = response_kls(LOGITS_A, LOGITS_B, MASK, T, TOP_P)
    assert torch.equal(torch.tensor(sums.misses), torch.isinf(both).sum(-1))
    assert 0 < sum(sums.misses) < sum(sums.positions)
    # B under A's nucleus gives a lower bound on the both-truncated KL (inf or not).
    restricted = token_kl(la, b_under_a_nucleus(la, T))
    assert bool((restricted <= both + 1e-12).all()) and bool(torch.isfinite(restricted).all())
    figures = kl_figures(sums)
    assert figures["kl_nucleus_miss"] == pytest.approx(sum(sums.misses) / (125 * STEPS))
    assert kl_figures(sums, greedy=True)["kl"] is None


def test_policy_kls_on_transformers_models() -> None:
    a, b = tiny_causal_lm(seed=0), tiny_causal_lm(seed=3)
    prompts = ["What is 2 plus 2?", "Name a colour."]
    texts = ["Four, I think.", "Blue"]
    same = policy_kls(a, a, prompts, texts, T, 0.95, batch_size=1)
    assert max(same.sampling) < 1e-5 and max(same.t1) < 1e-5 and sum(same.misses) == 0
    diff = policy_kls(a, b, prompts, texts, 1.0, 1.0)
    assert diff.positions == [len(t.encode()) for t in texts]  # byte-level tokenizer
    assert diff.sampling == pytest.approx(diff.t1) and min(diff.t1) > 0
    # Independently: the full forward pass of one unpadded row, KL at its response positions.
    tok = a[1]
    head = tok.apply_chat_template([{"role": "user", "content": prompts[1]}], tokenize=False,
                                   add_generation_prompt=True)
    p_ids = tok(head, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p_ids + tok(texts[1], add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        la, lb = (torch.log_softmax(m(input_ids=ids).logits[0, :-1, :len(tok)].double(), -1)
                  for m in (a[0], b[0]))
    want = float(token_kl(la, lb)[len(p_ids) - 1:].sum())
    assert diff.t1[1] == pytest.approx(want, rel=1e-4)
