"""DPO-family losses: values worked out by hand, and TRL 1.16 as an oracle on the same log-probs.

TRL keeps its DPO/KTO losses inline in ``DPOTrainer._compute_loss``; we call that method
unbound on a minimal stand-in object whose "model" returns per-token log-probs that sum to
the sequence log-probs we chose. No TRL code is copied.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor

from prefline.base.errors import PreflineError
from prefline.losses.policy import LOSSES, compute, nll_term

T = torch.tensor

# One pair used by most hand computations:
#   policy chosen -1, rejected -3; reference chosen -2, rejected -2
#   => chosen log-ratio Δc = +1, rejected log-ratio Δr = -1, h = Δc - Δr = 2.
PAIR = (T([-1.0]), T([-3.0]), T([-2.0]), T([-2.0]))


def test_sigmoid_by_hand() -> None:
    """β=0.5: βh = 1, loss = -log σ(1) = log(1 + e^-1) = 0.3132617; rewards β·Δ = ±0.5."""
    losses, rc, rr = LOSSES["sigmoid"](*PAIR, 0.5)
    torch.testing.assert_close(losses, T([math.log1p(math.exp(-1))]))
    torch.testing.assert_close((rc, rr), (T([0.5]), T([-0.5])))
    assert math.isclose(losses.item(), 0.3132617, abs_tol=1e-6)


def test_cdpo_by_hand() -> None:
    """ε=0.1, βh=1: 0.9·log(1+e^-1) + 0.1·log(1+e) = 0.9·0.3132617 + 0.1·1.3132617 = 0.4132617."""
    losses, _, _ = LOSSES["cdpo"](*PAIR, 0.5, label_smoothing=0.1)
    assert math.isclose(losses.item(), 0.4132617, abs_tol=1e-6)


def test_robust_by_hand() -> None:
    """ε=0.1, βh=1: (0.9·0.3132617 - 0.1·1.3132617) / 0.8 = 0.1506094 / 0.8 = 0.1882617."""
    losses, _, _ = LOSSES["robust"](*PAIR, 0.5, label_smoothing=0.1)
    assert math.isclose(losses.item(), 0.1882617, abs_tol=1e-6)


def test_hinge_by_hand() -> None:
    """β=0.5: max(0, 1 - 1) = 0;  β=0.25: max(0, 1 - 0.5) = 0.5."""
    assert LOSSES["hinge"](*PAIR, 0.5)[0].item() == 0.0
    assert LOSSES["hinge"](*PAIR, 0.25)[0].item() == 0.5


def test_ipo_by_hand() -> None:
    """β=0.5 so 1/(2β) = 1. Summed: (2 - 1)² = 1.
    Per token with chosen length 2, rejected length 1: h = 1/2 + 1/1 = 1.5, (1.5 - 1)² = 0.25."""
    assert LOSSES["ipo"](*PAIR, 0.5)[0].item() == pytest.approx(1.0)
    lengths = {"chosen_lengths": T([2.0]), "rejected_lengths": T([1.0])}
    assert LOSSES["ipo"](*PAIR, 0.5, **lengths)[0].item() == pytest.approx(0.25)


SIMPO_IN = (T([-2.0]), T([-6.0]), None, None)
SIMPO_LENS = {"chosen_lengths": T([2.0]), "rejected_lengths": T([3.0])}


def test_simpo_by_hand() -> None:
    """Averages: chosen -2/2 = -1, rejected -6/3 = -2. β=2, γ=0.5: 2·1 - 0.5 = 1.5,
    loss = log(1 + e^-1.5) = 0.2014133; rewards β·avg = -2, -4. No reference needed."""
    losses, rc, rr = LOSSES["simpo"](*SIMPO_IN, 2.0, gamma=0.5, **SIMPO_LENS)
    assert losses.item() == pytest.approx(0.2014133, abs=1e-6)
    assert (rc.item(), rr.item()) == (-2.0, -4.0)


def test_orpo_by_hand() -> None:
    """Averages a_c = -1, a_r = -2. log(1-e^-1) = -0.4586751, log(1-e^-2) = -0.1454135.
    log-odds ratio = (-1 + 2) - (-0.4586751 + 0.1454135) = 1.3132616 (= log(1+e)).
    β=0.1: -β log σ(1.3132616) = 0.1·log(1 + 1/(1+e)) = 0.1·log(1.2689414) = 0.0238183;
    plus NLL -a_c = 1
    gives 1.0238183."""
    losses, _, _ = LOSSES["orpo"](*SIMPO_IN, 0.1, **SIMPO_LENS)
    assert losses.item() == pytest.approx(1.0238183, abs=1e-6)


def test_kto_by_hand() -> None:
    """β=0.5, z0=0.5. Desirable Δ=+1: 1 - σ(0.5·(1-0.5)) = 1 - σ(0.25) = 0.4378235.
    Undesirable Δ=-1, weight 1.33: 1.33·(1 - σ(0.5·(0.5+1))) = 1.33·0.3208213 = 0.4266923."""
    losses, rc, rr = LOSSES["kto"](*PAIR, 0.5, kl=0.5, undesirable_weight=1.33)
    torch.testing.assert_close(losses, T([0.4378235, 0.4266923]))
    assert (rc.item(), rr.item()) == (0.5, -0.5)


def test_kto_accepts_unequal_and_empty_sides() -> None:
    losses, _, rr = LOSSES["kto"](T([-1.0, -2.0]), T([]), T([-1.0, -1.0]), T([]), 0.1)
    assert losses.shape == (2,) and rr.shape == (0,)
    # Negative KL estimates are clamped to 0: same as kl=0.
    torch.testing.assert_close(LOSSES["kto"](*PAIR, 0.5, kl=-3.0)[0],
                               LOSSES["kto"](*PAIR, 0.5, kl=0.0)[0])


def test_nll_term_by_hand() -> None:
    """Chosen log-prob -6 over 3 tokens: NLL per token = 2."""
    assert nll_term(T([-6.0]), T([3.0])).item() == 2.0


def test_compute_rejects_unknown_names_and_options() -> None:
    with pytest.raises(PreflineError, match="unknown loss"):
        compute("dpo2", *PAIR, 0.1)
    with pytest.raises(PreflineError, match="label_smoothing"):
        compute("sigmoid", *PAIR, 0.1, label_smoothing=0.2)
    with pytest.raises(PreflineError, match="lengths"):
        compute("simpo", *SIMPO_IN, 2.0)
    with pytest.raises(PreflineError, match="label_smoothing"):
        compute("robust", *PAIR, 0.1, label_smoothing=0.5)
    # Context options a loss does not use are dropped, not rejected.
    assert compute("sigmoid", *PAIR, 0.5, chosen_lengths=T([1.0]))[0].item() == pytest.approx(
        0.3132617, abs=1e-6)


def test_gradients_flow_to_policy_only() -> None:
    pc, pr = T([-1.0, -4.0], requires_grad=True), T([-3.0, -2.0], requires_grad=True)
    for name in LOSSES:
        lens = {"chosen_lengths": T([2.0, 3.0]), "rejected_lengths": T([4.0, 1.0])}
        losses, rc, _ = compute(name, pc, pr, T([-2.0, -3.0]), T([-2.0, -2.5]), 0.3, **lens)
        grad = torch.autograd.grad(losses.sum(), pc)[0]
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name
        assert not rc.requires_grad, name


# ---------------------------------------------------------------- TRL oracle -----------

def _random_batch(n: int = 6, seed: int = 0) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    lengths_c = torch.randint(1, 9, (n,), generator=g).float()
    lengths_r = torch.randint(1, 9, (n,), generator=g).float()
    pc = -lengths_c * (0.5 + torch.rand(n, generator=g))
    pr = -lengths_r * (0.5 + torch.rand(n, generator=g))
    rc = pc + torch.randn(n, generator=g)
    rr = pr + torch.randn(n, generator=g)
    return pc, pr, rc, rr, lengths_c, lengths_r


class _FakeLM(torch.nn.Module):
    """Returns TRL's fused-LM-head outputs for fixed per-token log-probs."""

    def __init__(self, per_token: Tensor) -> None:
        super().__init__()
        self.per_token = per_token

    def forward(self, **_: object) -> SimpleNamespace:
        z = torch.zeros_like(self.per_token)
        return SimpleNamespace(log_probs=self.per_token, entropy=z, mean_logits=z,
                               is_top1=z.bool())


def _trl_dpo(loss_types: list[str], weights: list[float], pc: Tensor, pr: Tensor, rc: Tensor,
             rr: Tensor, lc: Tensor, lr: Tensor, beta: float, eps: float = 0.0) -> float:
    from trl.trainer.dpo_trainer import DPOTrainer

    lengths = torch.cat([lc, lr]).long()
    width = int(lengths.max()) + 1
    pos = torch.arange(width)
    completion = ((pos >= 1) & (pos <= lengths[:, None])).long()  # token 0 is the prompt
    # Spread each sequence log-prob evenly over its completion tokens.
    per_token = completion[:, 1:] * (torch.cat([pc, pr]) / lengths)[:, None]
    model = _FakeLM(per_token)
    accel = SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x,
                            gather_for_metrics=lambda x: x)
    stand_in = SimpleNamespace(
        model=model, accelerator=accel, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=loss_types,
        loss_weights=weights, beta=beta, label_smoothing=eps, use_weighting=False,
        _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.zeros_like(completion), "attention_mask": torch.ones_like(completion),
              "completion_mask": completion, "ref_chosen_logps": rc, "ref_rejected_logps": rr}
    return float(DPOTrainer._compute_loss(stand_in, model, inputs, False))


@pytest.mark.parametrize(("name", "options"), [
    ("sigmoid", {}), ("hinge", {}), ("ipo", {}), ("robust", {"label_smoothing": 0.2}),
])
def test_matches_trl_dpo_trainer(name: str, options: dict[str, float]) -> None:
    pc, pr, rc, rr, lc, lr = _random_batch()
    for beta in (0.1, 0.7):
        ours = compute(name, pc, pr, rc, rr, beta, chosen_lengths=lc, rejected_lengths=lr,
                       **options)[0].mean()
        theirs = _trl_dpo([name], [1.0], pc, pr, rc, rr, lc, lr, beta,
                          options.get("label_smoothing", 0.0))
        assert ours.item() == pytest.approx(theirs, rel=1e-5, abs=1e-6), (name, beta)


def test_rpo_nll_term_matches_trl_sigmoid_plus_sft() -> None:
    """TRL's "sft" term is a token mean over the batch: equal to our per-example mean when
    every chosen response has the same length."""
    pc, pr, rc, rr, _, lr = _random_batch()
    lc = torch.full_like(pc, 4.0)
    alpha = 0.5
    ours = (compute("sigmoid", pc, pr, rc, rr, 0.1)[0] + alpha * nll_term(pc, lc)).mean()
    theirs = _trl_dpo(["sigmoid", "sft"], [1.0, alpha], pc, pr, rc, rr, lc, lr, 0.1)
    assert ours.item() == pytest.approx(theirs, rel=1e-5)


def test_simpo_matches_trl_cpo_loss() -> None:
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    pc, pr, _, _, lc, lr = _random_batch(seed=1)
    stand_in = SimpleNamespace(alpha=0.0, beta=2.0, simpo_gamma=0.7, label_smoothing=0.0,
                               loss_type="simpo",
                               accelerator=SimpleNamespace(device=torch.device("cpu")))
    # TRL's CPO trainer feeds average log-probs to cpo_loss when loss_type is simpo.
    theirs, t_rc, _ = CPOTrainer.cpo_loss(stand_in, pc / lc, pr / lr)
    ours, o_rc, _ = compute("simpo", pc, pr, None, None, 2.0, gamma=0.7,
                            chosen_lengths=lc, rejected_lengths=lr)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(o_rc, t_rc)


def test_orpo_odds_ratio_matches_trl() -> None:
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    pc, pr, _, _, lc, lr = _random_batch(seed=2)
    stand_in = SimpleNamespace(beta=0.25, accelerator=SimpleNamespace(device=torch.device("cpu")))
    or_term, *_ = ORPOTrainer.odds_ratio_loss(stand_in, pc / lc, pr / lr)
    ours, _, _ = compute("orpo", pc, pr, None, None, 0.25, chosen_lengths=lc, rejected_lengths=lr)
    # TRL's total is nll - mean(or_term); ours per example is nll_i - or_term_i.
    torch.testing.assert_close(ours, -pc / lc - or_term)
