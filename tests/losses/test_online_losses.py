"""Online RL losses: values worked out by hand, and TRL 1.16 as an oracle on the same tensors.

TRL keeps its GRPO and RLOO losses inside ``GRPOTrainer._compute_loss`` and
``RLOOTrainer._compute_loss``; we build the real trainers on a tiny model and call those
methods with constructed inputs (prompt/completion ids and masks, advantages, old and
reference per-token log-probs). The trainer runs its own forward through the same model, so
the comparison covers the per-token log-probs (``prefline.train.rollout.token_logps``) as
well as the clipped surrogate, the k3 KL term and the three normalisations. TRL's advantage
code is inline in its generation step and cannot be called alone: advantages are checked by
hand here (RLOO's leave-one-out baseline, GRPO's mean/std with TRL's 1e-4 and unbiased std).
"""

from __future__ import annotations

import math

import pytest
import torch

from prefline.base.errors import PreflineError
from prefline.losses.online import (
    AdaptiveKL,
    clipped_surrogate,
    gae,
    group_advantages,
    importance_ratio,
    kl_per_token,
    masked_stats,
    reduce_loss,
    value_loss,
    whiten,
)

T = torch.tensor


def test_group_advantages_by_hand() -> None:
    """Rewards [1, 0, 0, 1, 3]... one group [1, 2, 3, 6]: mean 3.
    rloo: r_i - (12 - r_i)/3 = [1-11/3, 2-10/3, 3-3, 6-2] = [-8/3, -4/3, 0, 4].
    dr_grpo: r - 3 = [-2, -1, 0, 3]. grpo: unbiased std = sqrt((4+1+0+9)/3) = sqrt(14/3)."""
    r = T([[1.0, 2.0, 3.0, 6.0]])
    torch.testing.assert_close(group_advantages(r, "rloo"), T([[-8 / 3, -4 / 3, 0.0, 4.0]]))
    torch.testing.assert_close(group_advantages(r, "dr_grpo"), T([[-2.0, -1.0, 0.0, 3.0]]))
    std = math.sqrt(14 / 3)
    torch.testing.assert_close(group_advantages(r, "grpo"),
                               T([[-2.0, -1.0, 0.0, 3.0]]) / (std + 1e-4))
    with pytest.raises(PreflineError, match="advantage"):
        group_advantages(r, "ppo")
    with pytest.raises(PreflineError, match="at least 2"):
        group_advantages(T([[1.0]]), "rloo")


def test_kl_estimators_by_hand() -> None:
    """logp = -1, ref = -2: d = ref - logp = -1. k1 = 1, k2 = 0.5, k3 = e^-1 + 1 - 1 = 0.3679."""
    lp, ref = T([[-1.0]]), T([[-2.0]])
    assert kl_per_token(lp, ref, "k1").item() == pytest.approx(1.0)
    assert kl_per_token(lp, ref, "k2").item() == pytest.approx(0.5)
    assert kl_per_token(lp, ref, "k3").item() == pytest.approx(math.exp(-1), abs=1e-6)
    assert kl_per_token(lp, lp, "k3").item() == 0.0


def test_clipped_surrogate_by_hand() -> None:
    """Token ratios e^0.5 = 1.6487 (A=+1: clipped at 1.2 -> loss -1.2) and e^-0.5 = 0.6065
    (A=+1: min(0.6065, 0.8) = 0.6065 -> loss -0.6065). Sequence level: one ratio
    e^(0.5-0.5) = 1 -> loss -1."""
    lp, old, mask = T([[0.0, -1.0]]), T([[-0.5, -0.5]]), T([[1.0, 1.0]])
    loss, clipped = clipped_surrogate(lp, old, T([1.0]), mask)
    torch.testing.assert_close(loss, T([[-1.2, -math.exp(-0.5)]]))
    torch.testing.assert_close(clipped, T([[1.0, 0.0]]))
    seq, _ = clipped_surrogate(lp, old, T([1.0]), mask, level="sequence")
    torch.testing.assert_close(seq, T([[-1.0]]))
    # A negative advantage clips from below: ratio 0.6065 < 0.8 -> -min(-0.6065, -0.8) = 0.8
    neg, _ = clipped_surrogate(lp, old, T([-1.0]), mask)
    torch.testing.assert_close(neg[0, 1], T(0.8))


def test_reduce_loss_normalisations_by_hand() -> None:
    """Two completions of 2 and 1 tokens, losses [[1, 3], [5, x]]:
    sequence: (1+3)/2 + 5/1 = 7, count 2; token: 9, count 3; dr_grpo (max 4): 9/4, count 2."""
    per, mask = T([[1.0, 3.0], [5.0, 100.0]]), T([[1.0, 1.0], [1.0, 0.0]])
    assert reduce_loss(per, mask, "sequence") == (T(7.0), 2.0)
    assert reduce_loss(per, mask, "token") == (T(9.0), 3.0)
    assert reduce_loss(per, mask, "dr_grpo", max_new_tokens=4) == (T(2.25), 2.0)
    assert reduce_loss(T([[2.0], [3.0]]), mask, "token") == (T(5.0), 2.0)  # sequence-level
    with pytest.raises(PreflineError, match="normalisation"):
        reduce_loss(per, mask, "mean")


def test_gae_by_hand() -> None:
    """γ=1, λ=0.5, rewards [0, 1], values [0.5, 0.25] (V after the end = 0):
    δ1 = 1 - 0.25 = 0.75, A1 = 0.75; δ0 = 0 + 0.25 - 0.5 = -0.25, A0 = -0.25 + 0.5·0.75 = 0.125.
    Returns A + V = [0.625, 1.0]. A padded third token stays 0."""
    adv, ret = gae(T([[0.0, 1.0, 7.0]]), T([[0.5, 0.25, 9.0]]), T([[1.0, 1.0, 0.0]]),
                   gamma=1.0, lam=0.5)
    torch.testing.assert_close(adv, T([[0.125, 0.75, 0.0]]))
    torch.testing.assert_close(ret, T([[0.625, 1.0, 0.0]]))


def test_value_loss_whiten_and_kl_controller_by_hand() -> None:
    """V=1, V_old=0, R=0, clip 0.2: max(1², 0.2²)/2 = 0.5; V=-0.1: max(0.01, 0.01)/2 = 0.005.
    Whitening [1, 3] (mean 2, var 1) -> [-1, 1]; keeping the mean -> [1, 3].
    KL controller: β=0.1, target 6, KL 12 -> error clipped to 0.2, n/horizon = 0.5 -> 0.11."""
    torch.testing.assert_close(value_loss(T([1.0, -0.1]), T([0.0, 0.0]), T([0.0, 0.0])),
                               T([0.5, 0.005]))
    x, m = T([1.0, 3.0]), T([1.0, 1.0])
    mean, var = masked_stats(x, m)
    assert (mean, var) == (2.0, 1.0)
    torch.testing.assert_close(whiten(x, m, mean, var), T([-1.0, 1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(whiten(x, m, mean, var, shift_mean=False), T([1.0, 3.0]))
    ctl = AdaptiveKL(0.1, target=6.0, horizon=10.0)
    assert ctl.update(12.0, 5) == pytest.approx(0.11)
    assert ctl.update(6.0, 5) == pytest.approx(0.11)  # on target: unchanged


# ----- TRL as the oracle ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def oracle_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tiny model (saved: TRL loads its reference model from the policy's path), 2 prompts
    × 2 completions of 5 tokens (one stops early), advantages and old/reference log-probs
    perturbed away from the current ones so clipping and KL engage."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefline.models.tiny import save_tiny
    from prefline.train.rollout import Rollout, token_logps

    path = save_tiny("causal", tmp_path_factory.mktemp("tiny"), seed=3)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 250, (4, 6), generator=g)  # equal lengths: no left padding
    completion = torch.randint(0, 250, (4, 5), generator=g)
    mask = torch.ones(4, 5)
    mask[1, 3:] = 0.0
    rollout = Rollout(prompt, torch.ones(4, 6, dtype=torch.long), completion, mask)
    with torch.no_grad():
        logps, _ = token_logps(model, rollout)
    old = logps + 0.3 * torch.randn(4, 5, generator=g)
    ref = logps + 0.5 * torch.randn(4, 5, generator=g)
    adv = T([0.7, -1.1, 0.4, -0.2])
    return {"model": model, "tok": tok, "rollout": rollout, "old": old, "ref": ref, "adv": adv}


def _trl_trainer(kind: str, tmp: str, model: object, tok: object, **args: object) -> object:
    from datasets import Dataset

    if kind == "grpo":
        from trl import GRPOConfig as Cfg
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Cfg
        from trl import RLOOTrainer as Trainer
    cfg = Cfg(output_dir=tmp, use_cpu=True, per_device_train_batch_size=2, num_generations=2,
              max_completion_length=5, report_to=[], bf16=False,
              **args)  # fp32: TRL autocasts to bf16 by default
    ds = Dataset.from_list([{"prompt": "hi"}] * 4)
    return Trainer(model=model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                   args=cfg, train_dataset=ds, processing_class=tok)


@pytest.mark.parametrize("loss_type,normalisation", [("grpo", "sequence"), ("bnpo", "token"),
                                                     ("dr_grpo", "dr_grpo")])
def test_grpo_loss_matches_trl(oracle_inputs: dict, tmp_path: object, loss_type: str,
                               normalisation: str) -> None:
    """Token-level clipped surrogate (ε 0.2/0.28) + β·k3 KL in the loss, the KL weighted by
    the importance ratio (TRL's default use_bias_correction_kl: the tokens were sampled from
    the old policy), for TRL's grpo (per-sequence mean), bnpo (per-token mean) and dr_grpo
    (/ B·max_completion_length)."""
    from prefline.train.rollout import token_logps

    o = oracle_inputs
    r, beta = o["rollout"], 0.04
    trainer = _trl_trainer("grpo", str(tmp_path), o["model"], o["tok"], beta=beta,
                           loss_type=loss_type, epsilon=0.2, epsilon_high=0.28)
    inputs = {"prompt_ids": r.prompt_ids, "prompt_mask": r.prompt_mask,
              "completion_ids": r.completion_ids, "completion_mask": r.completion_mask,
              "advantages": o["adv"], "old_per_token_logps": o["old"],
              "ref_per_token_logps": o["ref"]}
    trl_loss = trainer._compute_loss(trainer.model, inputs)

    logps, _ = token_logps(trainer.model, r)
    per_token, _ = clipped_surrogate(logps, o["old"], o["adv"], r.completion_mask, 0.2, 0.28)
    ratio = importance_ratio(logps, o["old"], r.completion_mask)
    per_token = per_token + beta * kl_per_token(logps, o["ref"], "k3") * ratio
    total, count = reduce_loss(per_token, r.completion_mask, normalisation, max_new_tokens=5)
    torch.testing.assert_close(total / count, trl_loss, rtol=1e-5, atol=1e-6)


def test_rloo_loss_matches_trl(oracle_inputs: dict, tmp_path: object) -> None:
    """TRL's RLOO: one importance ratio per completion from summed log-probs, clipped, mean
    over completions (its KL is k1 in the reward, i.e. in the advantages given here)."""
    from prefline.train.rollout import token_logps

    o = oracle_inputs
    r = o["rollout"]
    trainer = _trl_trainer("rloo", str(tmp_path), o["model"], o["tok"], beta=0.05)
    old_sum = (o["old"] * r.completion_mask).sum(-1)
    inputs = {"prompt_ids": r.prompt_ids, "prompt_mask": r.prompt_mask,
              "completion_ids": r.completion_ids, "completion_mask": r.completion_mask,
              "advantages": o["adv"], "old_logps": old_sum}
    trl_loss = trainer._compute_loss(trainer.model, inputs)

    logps, _ = token_logps(trainer.model, r)
    per_seq, _ = clipped_surrogate(logps, o["old"], o["adv"], r.completion_mask,
                                   level="sequence")
    total, count = reduce_loss(per_seq, r.completion_mask)
    torch.testing.assert_close(total / count, trl_loss, rtol=1e-5, atol=1e-6)
