"""KL(A‖B) between two autoregressive policies, from their logits (pure torch, no I/O).

Two figures, both in nats per response and both on responses sampled from A:

- ``kl_t1``: the models' own KL, softmax of the raw logits (temperature 1, no top-p).
- ``kl_sampling``: the KL of the distributions the evaluation samples from. A's next-token
  distribution is ``top_p(softmax(logits / T))`` exactly as Hugging Face ``generate`` builds
  it (temperature first, then the nucleus). Applying B's *own* nucleus to B would make the KL
  infinite at every position where B's nucleus drops a token A's keeps (one such position
  makes the whole expectation infinite), which says more about the cut-off than about the
  policies. So the top-p cut is computed from **A only** and applied to both: B is tempered by
  the same ``T``, restricted to A's nucleus and renormalised. The figure is finite, exactly 0
  for identical models, equal to the both-truncated KL wherever the two nuclei coincide, and
  otherwise a *lower bound* on it (B renormalised over A's nucleus gives A's tokens at least
  the probability B's own nucleus would). How often the both-truncated KL is infinite is
  reported beside it as ``nucleus_miss``: the fraction of positions where B's own nucleus
  excludes a token A's keeps.

Estimator and variance. By the chain rule, KL over whole responses equals
``E_{y~A}[Σ_t KL(A(·|y<t) ‖ B(·|y<t))]``. At each position of A's samples the inner KL is
computed *exactly* over the vocabulary, so the only randomness left is which prefixes were
visited: the per-response figure is unbiased, every term is ≥ 0, and its variance is the
variance over prefixes of the summed per-token KLs. The plain Monte-Carlo estimator
``Σ_t (log A(y_t) − log B(y_t))`` adds to that the martingale noise ``Σ_t ε_t`` of each sampled
token's log-ratio around its position's exact KL, so it is usually much noisier (and can be
negative); this is not a theorem for every pair of models (``ε_t`` can correlate negatively
with later positions' KLs), and the tests check it on enumerated tiny models. The reported
figure is the mean over N responses, so its standard error is ``std(per-response KL)/√N``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def sampling_logprobs(logits: torch.Tensor, temperature: float = 1.0,
                      top_p: float = 1.0) -> torch.Tensor:
    """Log-probabilities of the next-token distribution sampled with ``temperature`` and
    ``top_p`` (last dim = vocabulary; tokens outside the nucleus get ``-inf``).

    Matches Hugging Face's ``TopPLogitsWarper`` after its temperature warper: sort ascending,
    drop tokens whose cumulative probability is ≤ 1 − top_p, always keep the most likely one.
    ``temperature`` ≤ 0 is greedy decoding, which has no density to compare: rejected.
    """
    if temperature <= 0:
        raise ValueError("KL needs sampling: temperature must be > 0 (0 is greedy)")
    # At least float32 (bf16 logits lose the tail), float64 kept for exact checks.
    scaled = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
    if top_p < 1.0:
        sorted_logits, order = torch.sort(scaled, dim=-1, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cum <= (1.0 - top_p)
        drop_sorted[..., -1] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        scaled = scaled.masked_fill(drop, float("-inf"))
    return torch.log_softmax(scaled, dim=-1)


def restricted_logprobs(logits_b: torch.Tensor, logp_a: torch.Tensor,
                        temperature: float) -> torch.Tensor:
    """B's tempered next-token log-probs restricted to the tokens A's sampling keeps
    (``logp_a`` finite) and renormalised: B under A's nucleus."""
    scaled = logits_b.to(torch.promote_types(logits_b.dtype, torch.float32)) / temperature
    return torch.log_softmax(scaled.masked_fill(~torch.isfinite(logp_a), float("-inf")), -1)


def token_kl(logp_a: torch.Tensor, logp_b: torch.Tensor) -> torch.Tensor:
    """Exact KL(A‖B) per position over the last dim, ``Σ_v pA(v)(log pA(v) − log pB(v))``.

    Tokens A gives probability 0 contribute 0; a token A keeps and B excludes makes it inf.
    """
    p_a = logp_a.exp()
    diff = torch.where(p_a > 0, logp_a - logp_b, torch.zeros_like(logp_a))
    return (p_a * diff).sum(dim=-1)


def nucleus_misses(logp_a: torch.Tensor, logits_b: torch.Tensor, temperature: float,
                   top_p: float) -> torch.Tensor:
    """Per position: True where B's own nucleus excludes a token A's sampling keeps (the
    both-truncated KL is infinite there)."""
    kept_b = torch.isfinite(sampling_logprobs(logits_b, temperature, top_p))
    return (torch.isfinite(logp_a) & ~kept_b).any(dim=-1)


@dataclass(frozen=True)
class KLSums:
    """Per-response KL sums (nats) and nucleus-miss counts for a batch of A's samples."""

    sampling: list[float]
    """Σ_t KL(A_sampled ‖ B tempered under A's nucleus) per response (module docstring)."""
    t1: list[float]
    """Σ_t KL(A ‖ B) at temperature 1, no top-p, per response."""
    misses: list[int]
    """Positions per response where B's nucleus excludes a token A's nucleus keeps."""
    positions: list[int]
    """Response tokens per response."""


def response_kls(logits_a: torch.Tensor, logits_b: torch.Tensor, mask: torch.Tensor,
                 temperature: float, top_p: float) -> KLSums:
    """Both KL figures for each row of a batch, summed over the positions where ``mask`` is 1.

    ``logits_a`` / ``logits_b`` are ``[batch, positions, vocab]``: each model's next-token
    logits at the positions that predict A's response tokens (same tokens, same vocabulary);
    ``mask`` ``[batch, positions]`` marks the real (not padding) positions.
    """
    if logits_a.shape != logits_b.shape or logits_a.shape[:2] != mask.shape:
        raise ValueError("both models' logits need the same [batch, positions, vocab] shape "
                         "and the mask [batch, positions]")
    la_s = sampling_logprobs(logits_a, temperature, top_p)
    kl_s = token_kl(la_s, restricted_logprobs(logits_b, la_s, temperature))
    kl_1 = token_kl(sampling_logprobs(logits_a), sampling_logprobs(logits_b))
    m = mask.to(kl_s.dtype)
    miss = nucleus_misses(la_s, logits_b, temperature, top_p) & mask.bool()
    return KLSums(sampling=(kl_s * m).sum(-1).tolist(), t1=(kl_1 * m).sum(-1).tolist(),
                  misses=miss.sum(-1).tolist(), positions=mask.sum(-1).tolist())


def kl_figures(sums: KLSums, greedy: bool = False) -> dict[str, float | None]:
    """The result's figures: ``kl`` (sampling distributions), ``kl_t1`` (means over responses,
    nats per response) and ``kl_nucleus_miss`` (fraction of response positions).

    Greedy decoding (``greedy``) samples a point mass, whose KL is 0 or infinite: ``kl`` and
    the miss fraction are then None and only ``kl_t1`` is reported."""
    if not sums.sampling:
        raise ValueError("the KL needs at least one response")
    n_pos = sum(sums.positions)
    return {"kl": None if greedy else sum(sums.sampling) / len(sums.sampling),
            "kl_t1": sum(sums.t1) / len(sums.t1),
            "kl_nucleus_miss": None if greedy or n_pos == 0 else sum(sums.misses) / n_pos}
