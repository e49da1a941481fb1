"""`prefline generate` keeps what finished: a real SIGINT to a real process leaves valid JSONL
with only complete prompts and exits 130; `--resume` samples only the rest and refuses
responses sampled with other settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prefline.base.errors import PreflineError
from prefline.cli import main


def _prompts(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"Tell me fact number {i} about rivers."}) + "\n"
                            for i in range(n)))
    return path


def _default_sigint() -> None:
    # A child of a background job may inherit SIGINT ignored; Python then never raises
    # KeyboardInterrupt. Restore the default so that the signal behaves as Ctrl-C does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_after_the_first_batch_keeps_the_finished_prompts(
        tmp_path: Path, tiny_causal_dir: Path, sig: signal.Signals, code: int) -> None:
    prompts, out = _prompts(tmp_path / "prompts.jsonl", 400), tmp_path / "out.jsonl"
    env = {**os.environ, "PREFLINE_PROGRESS_SECONDS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefline", "generate", "--policy", str(tiny_causal_dir),
         "--prompts", str(prompts), "--out", str(out), "--n", "2", "--batch-size", "2",
         "--max-new-tokens", "24", "--precision", "fp32", "--threads", "1", "--no-store"],
        env=env, stderr=subprocess.PIPE, preexec_fn=_default_sigint)
    assert proc.stderr is not None
    for line in proc.stderr:  # progress lines: the first one means a batch has landed
        if line.startswith(b"generating "):
            proc.send_signal(sig)
            break
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == code, err
    rows = [json.loads(x) for x in out.read_text().splitlines()]  # valid JSONL
    assert 1 <= len(rows) < 400
    assert all(len(r["responses"]) == 2 for r in rows)
    assert [r["prompt"][0]["content"] for r in rows] == sorted(
        (r["prompt"][0]["content"] for r in rows), key=lambda t: int(t.split()[4]))  # input order
    last = err.strip().splitlines()[-1]
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert last.startswith(f"interrupted ({name}) kept {len(rows)} of 400 prompts "
                           f"({2 * len(rows)} responses) in {out}; continue with: prefline "
                           "generate ")
    assert last.endswith(" --no-store --resume")


def test_resume_samples_only_the_missing_prompts(tmp_path: Path, tiny_causal_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    prompts, out = _prompts(tmp_path / "prompts.jsonl", 6), tmp_path / "out.jsonl"
    args = ["generate", "--policy", str(tiny_causal_dir), "--prompts", str(prompts), "--out",
            str(out), "--n", "2", "--max-new-tokens", "6", "--precision", "fp32", "--no-store",
            "--json"]
    main([*args, "--limit", "3"])  # what an interrupted run leaves: the first prompts
    capsys.readouterr()
    first = out.read_text().splitlines()
    main([*args, "--resume"])
    res = json.loads(capsys.readouterr().out)
    assert res["resumed"] == 3 and res["prompts"] == 6 and res["responses"] == 12
    lines = out.read_text().splitlines()
    assert lines[:3] == first and len(lines) == 6  # kept rows untouched, in input order
    with pytest.raises(PreflineError, match=r"temperature: 0\.8 there, 0\.5 now"):
        from prefline.generate.run import GenerateConfig, run
        from prefline.store.context import Context

        run(GenerateConfig(prompts=str(prompts), out=out, policy=str(tiny_causal_dir), n=2,
                           max_new_tokens=6, precision="fp32", temperature=0.5, resume=True,
                           store=False), Context())
