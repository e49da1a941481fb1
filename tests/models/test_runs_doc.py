"""The Python blocks of docs/runs.md "Loading artifacts with other tools" run as written, in
a folder holding tiny stand-ins for the run folders they name (``runs/rm``, ``runs/dpo``);
the one change is the embedded policy's Hub id, which becomes a tiny local model."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from prefline.models.reward import RewardModel, load_reward_model
from prefline.models.tiny import tiny_causal_lm
from prefline.train.dpo import export_policy

DOC = Path(__file__).resolve().parents[2] / "docs" / "runs.md"
SECTION = "## Loading artifacts with other tools"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def python_blocks() -> list[str]:
    text = DOC.read_text()
    section = text[text.index(SECTION):]
    following = section.find("\n## ", len(SECTION))
    section = section if following < 0 else section[:following]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def in_runs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: fastest single-threaded on a shared CPU
    yield tmp_path
    torch.set_num_threads(threads)


def test_the_section_has_the_blocks_this_test_runs() -> None:
    blocks = python_blocks()
    assert len(blocks) == 4
    assert "AutoModelForSequenceClassification" in blocks[0] and "PeftModel" in blocks[3]


def test_loading_blocks_run(in_runs_folder: Path, tiny_encoder_dir: Path,
                            tiny_causal_dir: Path) -> None:
    reward = RewardModel.create(str(tiny_encoder_dir), max_length=64, seed=2)
    reward.norm_mean, reward.norm_std = 0.1, 1.3
    reward.save(in_runs_folder / "runs" / "rm")

    from peft import LoraConfig, get_peft_model

    lm, tok = tiny_causal_lm()
    adapter = export_policy(get_peft_model(lm, LoraConfig(r=2, target_modules="all-linear")),
                            tok, in_runs_folder / "runs" / "dpo", "adapter",
                            base_model=str(tiny_causal_dir))
    assert adapter == in_runs_folder / "runs" / "dpo" / "adapter"

    namespace: dict[str, Any] = {}
    for block in python_blocks():
        exec(compile(block.replace(HUB_ID, str(tiny_causal_dir)), str(DOC), "exec"), namespace)

    ours = load_reward_model(in_runs_folder / "runs" / "rm", precision="fp32").score(
        "How do I boil an egg?", ["Boil it for nine minutes.", "No."])
    torch.testing.assert_close(namespace["rewards"], torch.tensor(ours), atol=1e-4, rtol=0)
    assert namespace["out"]["label"] == "reward"
    assert namespace["out"]["score"] == pytest.approx(ours[1], abs=1e-4)
    assert 0 < float(namespace["p_first_better"]) < 1
    assert namespace["prefline_reward"](["How do I boil an egg?"], ["No."]) == pytest.approx(
        [ours[1]], abs=1e-4)
    assert not any("lora" in n for n, _ in namespace["merged"].named_parameters())
