"""Batched sampling on the tiny causal model: counts, determinism, prompt files."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefline.base.errors import PreflineError
from prefline.generate.io import read_generations, read_prompt_rows, read_prompts
from prefline.generate.sampling import generate, load_policy, render_prompts

PROMPTS = ["Hello there", [{"role": "user", "content": "Write a longer question about lists?"}], "Hi"]


@pytest.fixture(scope="module")
def tiny(tiny_causal_dir: Path):  # type: ignore[no-untyped-def]
    return load_policy(str(tiny_causal_dir), precision="fp32")


def test_counts_and_seeded_determinism(tiny) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny
    kw = dict(n=3, max_new_tokens=8, temperature=1.0, batch_size=4)
    out = generate(model, tok, PROMPTS, seed=7, **kw)
    assert len(out) == 3 and all(len(r) == 3 for r in out)
    assert out == generate(model, tok, PROMPTS, seed=7, **kw)
    assert out != generate(model, tok, PROMPTS, seed=8, **kw)
    assert len({r for rs in out for r in rs}) > 3  # sampling gives distinct responses


def test_greedy_batched_equals_one_at_a_time(tiny) -> None:  # type: ignore[no-untyped-def]
    """Left padding + attention mask: a prompt's greedy output does not depend on its batch."""
    model, tok = tiny
    batched = generate(model, tok, PROMPTS, n=1, max_new_tokens=6, temperature=0.0, batch_size=8)
    single = [generate(model, tok, [p], n=1, max_new_tokens=6, temperature=0.0)[0] for p in PROMPTS]
    assert batched == single


def test_chat_template_opens_the_assistant_turn(tiny) -> None:  # type: ignore[no-untyped-def]
    _, tok = tiny
    text = render_prompts(tok, ["Hi"])[0]
    assert text.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nHi<|im_end|>" in text


def test_prompt_files(tmp_path: Path) -> None:
    plain = tmp_path / "p.txt"
    plain.write_text("first prompt\n\nsecond prompt\n")
    assert [g.prompt[0]["content"] for g in read_prompts(plain)] == ["first prompt", "second prompt"]
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "a", "category": "maths", "tags": ["x"]}\n{"prompt": 3}\n')
    with pytest.raises(PreflineError, match=r"line 2, field 'prompt'"):
        read_prompts(jl)
    jl.write_text('{"prompt": "a", "category": "maths", "tags": ["x"]}\n')
    assert read_prompts(jl)[0].tags == ("x", "maths")
    gen = tmp_path / "g.jsonl"
    gen.write_text('{"prompt": "a", "responses": "oops"}\n')
    with pytest.raises(PreflineError, match="field 'responses'"):
        read_generations(gen)


def test_one_prompt_reader_for_generate_and_eval(tmp_path: Path) -> None:
    """``read_prompt_rows`` serves ``generate`` and ``eval policy``: ids (or line numbers),
    categories, bare JSON strings, the bundled set, and errors naming file, line and field."""
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"id": "q1", "prompt": "How?", "category": "should_not_refuse"}\n\n'
                  '"What is 3 times 4?"\n')
    rows = read_prompt_rows(jl)
    assert [(r.id, r.category, r.tags) for r in rows] == [
        ("q1", "should_not_refuse", ("should_not_refuse",)), ("3", None, ())]
    assert rows[1].prompt == [{"role": "user", "content": "What is 3 times 4?"}]
    bundled = read_prompt_rows("bundled:eval")
    assert len(bundled) == 84 and bundled[0].id == "coding-000" and bundled[0].category == "coding"
    jl.write_text('{"prompt": "ok"}\nnot json\n')
    with pytest.raises(PreflineError, match=r"p.jsonl, line 2: malformed JSON"):
        read_prompt_rows(jl)
    jl.write_text('{"prompt": "ok"}\n{"text": "no prompt key"}\n')
    with pytest.raises(PreflineError) as err:
        read_prompt_rows(jl)
    assert (err.value.line, err.value.field) == (2, "prompt")
    with pytest.raises(PreflineError, match="prompt file not found"):
        read_prompt_rows(tmp_path / "missing.jsonl")
    with pytest.raises(PreflineError, match="unknown prompt split 'test'"):
        read_prompt_rows("bundled:test")


def test_device_placement_follows_the_context(tiny) -> None:  # type: ignore[no-untyped-def]
    """``auto`` picks CUDA when present, else the CPU; asking for CUDA without it is an error
    naming the device setting, not a silent fall-back."""
    import torch

    from prefline.generate.sampling import place_on_device

    model, _ = tiny
    cuda = torch.cuda.is_available()
    assert next(place_on_device(model, "auto").parameters()).device.type == ("cuda" if cuda else "cpu")
    if cuda:
        assert next(place_on_device(model, "cuda").parameters()).device.type == "cuda"
    else:
        with pytest.raises(PreflineError, match="field 'device'"):
            place_on_device(model, "cuda")
    place_on_device(model, "cpu")
