"""Per-segment attention: same scores and gradients as the block-diagonal 4-D mask."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from prefline.models.packing import pack
from prefline.models.reward import RewardModel

PROMPTS = [[{"role": "user", "content": "How do I boil an egg?"}],
           [{"role": "user", "content": "Name a colour."}]]
RESPONSES = [["Boil it for ten minutes.", "No.", "Put it in cold water, then boil it."],
             ["Blue.", "Seven, I think."]]


def _scores_and_grads(model: RewardModel, per_segment: bool) -> tuple[torch.Tensor, dict]:
    model.per_segment = per_segment
    encoded = [e for p, rs in zip(PROMPTS, RESPONSES, strict=True) for e in model.encode(p, rs)]
    batch = model.make_batch(encoded)
    model.zero_grad(set_to_none=True)
    scores = model(batch)
    (scores.squeeze(-1) * torch.arange(1.0, len(encoded) + 1)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return scores.detach(), grads


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_segments_equal_the_masked_rows(tiny_encoder_dir: Path, pooling: str) -> None:
    model = RewardModel.create(str(tiny_encoder_dir), pooling=pooling, max_length=96).eval()
    assert model.segment_attention
    got, got_grads = _scores_and_grads(model, True)
    want, want_grads = _scores_and_grads(model, False)
    assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert got_grads.keys() == want_grads.keys() and len(got_grads) > 4
    for name, g in got_grads.items():
        assert_close(g, want_grads[name], atol=1e-5, rtol=1e-5, msg=name)
    # the config names its own attention again after the forward (exports must not name ours)
    assert model.backbone.config._attn_implementation == "sdpa"


def test_segment_batches_are_one_unpadded_row_without_a_mask(tiny_encoder_dir: Path) -> None:
    model = RewardModel.create(str(tiny_encoder_dir), max_length=96).eval()
    encoded = model.encode(PROMPTS[0], RESPONSES[0]) + model.encode(PROMPTS[1], RESPONSES[1])
    batch = model.make_batch(encoded)
    with torch.no_grad():
        model(batch)
    assert batch.input_ids.shape[0] == 1 and batch.pad_fraction == 0
    assert "attention_mask" not in vars(batch)  # never built on this path
    model.per_segment = False
    masked = model.make_batch(encoded)
    assert masked.input_ids.shape[0] == 2  # one group per row: as wide as the widest group


def test_spans_are_what_the_mask_allows() -> None:
    # two groups (prompts [1, 2] and [7]); responses [3, 4], [5] and [8, 9]
    seqs = [[1, 2, 3, 4], [1, 2, 5], [7, 8, 9]]
    batch = pack(seqs, pad_id=0, segments=[2, 2, 1], width=20)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 7, 8, 9]]
    assert batch.spans == [[(0, 2, ((0, 2),)), (2, 4, ((0, 2), (2, 4))), (4, 5, ((0, 2), (4, 5))),
                            (5, 6, ((5, 6),)), (6, 8, ((5, 6), (6, 8)))]]
    mask = batch.attention_mask[0, 0]
    for start, end, keys in batch.spans[0]:
        allowed = torch.zeros(mask.shape[1], dtype=torch.bool)
        for a, b in keys:
            allowed[a:b] = True
        assert (mask[start:end] == allowed).all()


def test_decoders_keep_the_mask(tiny_causal_dir: Path) -> None:
    model = RewardModel.create(str(tiny_causal_dir), max_length=96)
    assert not model.segment_attention
