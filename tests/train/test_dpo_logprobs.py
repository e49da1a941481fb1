"""Prefix-shared, packed log-probs equal separate forwards; encoding handles bad input."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from prefline.base.errors import PreflineError
from prefline.formats.examples import PreferencePair, as_messages
from prefline.models.tiny import tiny_causal_lm, tiny_tokenizer
from prefline.train.logprobs import SequenceLogps, chunked_token_logps
from prefline.train.policy_batch import EncodedPair, encode_pairs, pack


def _pairs(n: int = 5) -> list[PreferencePair]:
    return [PreferencePair(as_messages("tell me about cats " * (i + 1)), "Cats purr. " * (i + 1),
                           "No." + "!" * i) for i in range(n)]


def _separate(model: Any, pairs: list[EncodedPair]) -> torch.Tensor:
    """The obvious way: one forward per (prompt + response), full log-softmax."""
    out = []
    for p in pairs:
        for resp in (p.chosen, p.rejected):
            ids = torch.tensor([list(p.prompt) + list(resp)])
            logp = F.log_softmax(model(input_ids=ids).logits.float(), -1)[0]
            start = len(p.prompt) - 1
            out.append(sum(logp[start + j, t] for j, t in enumerate(resp)))
    return torch.stack(out)


@pytest.mark.parametrize("row_tokens", [0, 400])
def test_prefix_shared_packed_equals_separate_forwards_fp32(row_tokens: int) -> None:
    model, tok = tiny_causal_lm()
    enc, _ = encode_pairs(_pairs(), tok, 96)
    batch = pack(enc, row_tokens=row_tokens, pad_id=tok.pad_token_id)
    if row_tokens:
        assert batch.input_ids.shape[0] < len(enc)  # several pairs really share a row
    with torch.no_grad():
        got = SequenceLogps(model, chunk=7)(batch)  # odd chunk: exercises the chunk seams
        want = _separate(model, enc)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    assert batch.tokens == sum(len(p.prompt) + len(p.chosen) + len(p.rejected) for p in enc)


def test_eager_attention_gets_an_additive_mask() -> None:
    model, tok = tiny_causal_lm()
    model.config._attn_implementation = "eager"
    enc, _ = encode_pairs(_pairs(3), tok, 64)
    with torch.no_grad():
        torch.testing.assert_close(SequenceLogps(model)(pack(enc, 300)), _separate(model, enc),
                                   atol=1e-4, rtol=1e-5)


def test_mask_hides_chosen_from_rejected_and_restarts_positions() -> None:
    pair = EncodedPair(prompt=(1, 2), chosen=(3, 4, 5), rejected=(6, 7))
    b = pack([pair])
    m = b.attention_mask[0, 0]
    assert b.position_ids[0].tolist() == [0, 1, 2, 3, 4, 2, 3]
    assert m[5, :2].all() and not m[5, 2:5].any() and m[5, 5]   # rejected: prompt + itself
    assert m[4, :5].all() and not m[4, 5:].any()               # chosen: prompt + chosen
    # chosen token 0 and rejected token 0 are both predicted from the last prompt token
    assert b.pred_cols.tolist() == [1, 2, 3, 1, 5] and b.owner.tolist() == [0, 0, 0, 1, 1]


def test_chunked_head_matches_full_log_softmax_and_its_gradient() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50)
    h = torch.randn(13, 8, requires_grad=True)
    t = torch.randint(0, 50, (13,))
    got = chunked_token_logps(h, head, t, chunk=4)
    want = F.log_softmax(head(h), -1).gather(-1, t[:, None]).squeeze(-1)
    torch.testing.assert_close(got, want)
    g1 = torch.autograd.grad(got.sum(), (h, head.weight))
    g2 = torch.autograd.grad(want.sum(), (h, head.weight))
    torch.testing.assert_close(g1, g2)


def test_long_prompt_is_cut_from_the_left_and_counted() -> None:
    tok = tiny_tokenizer()
    pair = PreferencePair(as_messages("x" * 200 + "END"), "yes", "no")
    enc, report = encode_pairs([pair], tok, 40)
    p = enc[0]
    assert report.truncated_prompts == 1 and report.truncated_responses == 0
    assert len(p.prompt) + len(p.chosen) <= 40
    assert tok.decode(p.chosen) == "yes<|endoftext|>"           # response kept whole
    assert "END" in tok.decode(p.prompt) and "truncated" in report.notes[0]


def test_overlong_response_is_cut_and_counted() -> None:
    # required=False: as a training set alone this pair is refused (both its templated
    # prompt and its response are cut; see test_max_length_too_small_is_refused).
    enc, report = encode_pairs([PreferencePair(as_messages("q"), "a" * 100, "b")],
                               tiny_tokenizer(), 32, required=False)
    assert report.truncated_responses == 1 and len(enc[0].prompt) + len(enc[0].chosen) == 32


@pytest.mark.parametrize(("pair", "reason"), [
    (PreferencePair(as_messages("q"), "", "no"), "the chosen response is empty"),
    (PreferencePair(as_messages("q"), "yes", "  "), "the rejected response is empty"),
    (PreferencePair(as_messages("q"), "same", "same"), "chosen and rejected are identical"),
    (PreferencePair(as_messages("q"), "a", "b", tie=True), "a tie carries no preference"),
])
def test_unusable_pairs_are_skipped_named_and_counted(pair: PreferencePair, reason: str) -> None:
    enc, report = encode_pairs([_pairs(1)[0], pair], tiny_tokenizer(), 64)
    assert len(enc) == 1 and report.skipped == {reason: 1}
    assert report.notes[0] == f"skipped pair 2: {reason}"
    with pytest.raises(PreflineError, match=f"no usable preference pairs.*{reason}") as err:
        encode_pairs([pair], tiny_tokenizer(), 64)
    assert "\n" not in str(err.value)


def test_chat_prompt_without_template_is_refused_plain_text_is_fine() -> None:
    tok = tiny_tokenizer(chat_template=False)
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "and?"}]
    with pytest.raises(PreflineError, match="no chat template"):
        encode_pairs([PreferencePair(chat, "a", "b")], tok, 64)
    enc, _ = encode_pairs([PreferencePair(as_messages("plain"), "a", "b")], tok, 64)
    assert tok.decode(enc[0].prompt) == "plain"


@pytest.mark.slow
def test_prefix_shared_equals_separate_on_the_default_model() -> None:
    from prefline.models.hub import load_causal_lm

    model, tok = load_causal_lm(None)
    pairs = [PreferencePair([{"role": "user", "content": "How do I boil an egg?"}],
                            "Put it in boiling water for 8 minutes.", "I can't help with that."),
             PreferencePair(as_messages("Name a colour."), "Blue.", "Seven.")]
    enc, _ = encode_pairs(pairs, tok, 128)
    with torch.no_grad():
        got = SequenceLogps(model, chunk=16)(pack(enc, row_tokens=256, pad_id=tok.pad_token_id))
        want = _separate(model, enc)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
