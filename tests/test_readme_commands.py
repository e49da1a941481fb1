"""The commands in README.md and docs/*.md run: a wrong path, flag or order in the docs fails here.

Each fenced block that holds ``prefline ...`` lines is either run (:data:`RUN`) or listed in
:data:`NOT_RUN` with the reason; a new block in neither fails
:func:`test_every_command_block_is_run_or_excused`. A block runs as the docs write it, line
by line, with ``python -m prefline`` in a fresh folder with its own ``PREFLINE_HOME``, and
every command must exit 0. What changes, and only this (the documented mapping):

- :data:`FILES`: the user's own files the docs assume (``my_prefs.jsonl``, prompts) are
  written first, small;
- :data:`WORDS`: the embedded default models become tiny random ones built in code
  (``MY_MODEL``, ``--baseline default``), placeholders become values (``ID`` -> ``1``);
- :data:`EXTRA`: per command, trailing settings that keep it quick (``max_steps=2``, fewer
  new tokens) and ``--model TINY`` where the docs rely on the embedded default.

Tiny models run single-threaded (``OMP_NUM_THREADS=1``: fastest on a shared 2-core machine)
and two blocks run at a time, so the file takes about as long as its longest block.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


@dataclass(frozen=True)
class Block:
    """The fenced block(s) of one section that are run, in order, and what they need."""

    doc: str
    heading: str
    setup: tuple[str, ...] = ()
    """Commands run first (e.g. data for a block that assumes a filled store)."""
    files: tuple[str, ...] = ()
    """Files from :data:`FILES` (or fenced blocks of the section, by name) to write first."""
    after: tuple[str, ...] = ()
    """Commands the doc gives inline in prose for this section, run after the block."""
    cwd_repo: tuple[str, ...] = ()
    """Inline commands whose paths are relative to the repository (``configs/...``)."""


RUN: dict[str, Block] = {
    "readme-loop": Block(
        "README.md", "The loop on your own data", files=("my_prefs.jsonl",),
        after=("prefline cache info",
               "prefline cache clear --what ref-logps --yes",
               "prefline registry show ID --tree",
               "prefline users add alice --role annotator",
               "prefline keys create NAME"),
        cwd_repo=("prefline config show dpo --config configs/dpo-lora.toml lr=1e-4",)),
    "demo-own-data": Block(
        "docs/demo.md", "Run the same loop on your own data and model",
        files=("my_prompts.jsonl", "my_heldout_prompts.jsonl")),
    "feedback-kinds": Block(
        "docs/feedback-kinds.md", "Choosing kinds", setup=("prefline import mixed.jsonl",),
        files=("mixed.jsonl",)),
    "feedback-kinds-config": Block(
        "docs/feedback-kinds.md", "Implicit signals → training labels",
        setup=("prefline import mixed.jsonl",), files=("mixed.jsonl", "snapshot.toml")),
    "runs-caches": Block("docs/runs.md", "Caches and disk"),
    "formats-try": Block("docs/formats.md", "Try it", files=("shapes.jsonl",)),
    "privacy-segments": Block("docs/privacy.md", "Personal data and segments",
                              files=("people.jsonl",)),
    "privacy-consent": Block("docs/privacy.md", "Consent", files=("people.jsonl",),
                             setup=("prefline import people.jsonl",
                                    "prefline users consent u1 training")),
    "privacy-forget": Block("docs/privacy.md", "Forgetting and retention",
                            files=("people.jsonl", "retention.toml")),
    "privacy-pii": Block("docs/privacy.md", "PII redaction",
                         files=("support.jsonl", "redaction.toml")),
}
"""Sections whose command blocks run, by test id."""

NOT_RUN: dict[tuple[str, str], str] = {
    ("docs/demo.md", "prefline demo --out /tmp/demo"):
        "the full demo takes minutes; tests/demo runs `prefline demo --quick`",
    ("docs/demo.md", "prefline eval policy --policy DIR_A --baseline DIR_B --prompts "
                     "prompts.jsonl"):
        "a synopsis with placeholders and [optional] flags; the same command runs in "
        "demo-own-data",
    ("docs/benchmarks/audit.md", "prefline bench audit --n 100000 --json"):
        "full-size benchmark; tests/bench runs each benchmark at smoke size",
    ("docs/benchmarks/collect.md", "prefline bench collect --events 50000 --seconds 60 --json"):
        "full-size benchmark; tests/bench runs each benchmark at smoke size",
    ("docs/benchmarks/collect.md", "prefline bench collect --no-closed --rate 150"):
        "a profiling run of the benchmark (a minute); tests/bench runs the open loop at smoke size",
    ("docs/benchmarks/collect.md", "prefline bench collect --no-closed --rate 1000"):
        "full-size open-loop benchmark; tests/bench runs the open loop at smoke size",
    ("docs/benchmarks/dpo.md", "prefline bench dpo --against trl --reps"):
        "full-size benchmark; tests/bench runs each benchmark at smoke size",
    ("docs/benchmarks/ingest.md", "prefline bench ingest --no-postgres --json"):
        "full-size benchmark; tests/bench runs each benchmark at smoke size",
    ("docs/benchmarks/reward.md", "prefline bench reward --against trl --reps"):
        "full-size benchmark; tests/bench runs each benchmark at smoke size",
    ("docs/benchmarks/dpo.md", "prefline bench dpo --against trl --json"):
        "full-size benchmark; tests/bench runs each benchmark at smoke size",
    ("docs/benchmarks/dpo.md", "prefline train dpo --data /tmp/hh260.jsonl --out "
                               "/tmp/acc_run/out"):
        "a measured run on 260 HH pairs with the embedded model (minutes), kept as the record "
        "of a result",
    ("docs/benchmarks/grpo.md", "prefline bench grpo --against trl --json"):
        "full-size benchmark; tests/bench runs each benchmark at smoke size",
    ("docs/benchmarks/generation.md", "prefline bench generate"):
        "full-size benchmark; tests/bench runs each benchmark at smoke size",
    ("docs/benchmarks/generation.md", "prefline generate --prompts prompts.jsonl --n 4 "
                                      "--max-new-tokens 160 --out gen.jsonl --json"):
        "a measured run with the embedded model (minutes), kept as the record of a result",
    ("docs/benchmarks/ingest.md", "prefline bench ingest --json"):
        "full-size benchmark; tests/bench runs each benchmark at smoke size",
    ("docs/benchmarks/reward.md", "prefline bench reward --against trl --json"):
        "full-size benchmark; tests/bench runs each benchmark at smoke size",
    ("docs/benchmarks/reward.md", "prefline train reward --data "
                                  "../shared/data/hh-rlhf-harmless-base-test.first800.jsonl.gz"):
        "a measured run on the shared HH data with MiniLM (minutes), kept as the record of a "
        "result",
    ("docs/benchmarks/online.md", "prefline train reward --data "
                                  "../shared/data/hh-rlhf-harmless-base-test.first800.jsonl.gz"):
        "a measured online-DPO run with the embedded SmolLM2 and MiniLM (tens of minutes), kept "
        "as the record of a result; tests/train/test_online_dpo.py runs the stage on tiny models",
    ("docs/personalisation.md", "prefline disagree --out disagree --n-prompts 40"):
        "a measured run with MiniLM (minutes), kept as the record of a result; "
        "tests/models/test_personal_reward.py runs the same stages on a tiny encoder",
    ("docs/privacy.md", "prefline train reward --data disagree/train.jsonl --test-fraction 0 "
                        "--personal heads --segment-key style --dp-epsilon 8"):
        "a measured DP run with MiniLM on the set docs/personalisation.md builds, kept as the "
        "record of a result; tests/train/test_reward_dp.py runs DP training on a tiny encoder",
    ("docs/rollout.md", "prefline train dpo --snapshot v1 --lora --out policy/"):
        "the walk-through's training and evaluation (minutes); tests/rollout register "
        "policies and evaluations directly",
    ("docs/rollout.md", "prefline gate check --gates gates.toml"):
        "needs the walk-through's evaluations; tests/rollout/test_lifecycle.py runs gate "
        "check, promote, rollback and status through the CLI",
    ("docs/rollout.md", "prefline registry promote 7"):
        "needs a gated policy; tests/rollout/test_lifecycle.py runs the same commands",
    ("docs/rollout.md", "prefline serve --db"):
        "a server that runs until stopped; tests/rollout serve it on loopback",
    ("docs/rollout.md", "prefline registry promote 9"):
        "needs a second gated policy; tests/rollout/test_lifecycle.py runs the same commands",
    ("docs/rollout.md", "prefline registry rollback 9"):
        "needs a promoted policy; tests/rollout/test_lifecycle.py rolls one back",
    ("docs/scale.md", "prefline train dpo --data my_prefs.jsonl --device cuda"):
        "needs a CUDA GPU; scripts/gpu-check.sh runs train dpo/reward on cuda, and "
        "tests/train/test_device.py the same stages with --device cpu",
    ("docs/generation.md", "prefline generate --prompts prompts.jsonl --n 4 --out cands.jsonl "
                           "--backend openai:"):
        "needs a running OpenAI-compatible server; tests/generate/test_backend_openai.py starts "
        "llama.cpp's server on loopback and runs prefline generate --backend openai: against it",
    ("docs/generation.md", "prefline generate --policy runs/dpo/model --backend vllm"):
        "needs vLLM and a CUDA GPU (not installed in CI); the vllm backend is untested here",
    ("docs/personalisation.md", "prefline disagree --out runs/disagree --n-prompts 16"):
        "a measured run with the embedded SmolLM2 (tens of minutes on a busy machine), kept as "
        "the record of a result; tests/train/test_personal_dpo.py runs disagree, train "
        "personal-dpo and serving on tiny models",
    ("docs/scale.md", "prefline db upgrade"):
        "needs a PostgreSQL server at the documented URL; the PostgreSQL tests run the "
        "store against one (make test)",
}
"""Command blocks not run, keyed by (doc, the start of the block's first command): why."""

NOT_RUN_INLINE = {
    "prefline serve --port 8000": "a server that runs until stopped; tests/collect serve it",
    "prefline campaign create …": "elided arguments; tests/collect create campaigns",
    "prefline demo [--out DIR] [--quick]": "a synopsis; tests/demo run the demo",
    "prefline demo": "the full demo takes minutes; tests/demo run `prefline demo --quick`",
}
"""README inline commands (in prose) not run, and why; the others are in RUN's ``after``."""

WORDS: dict[str, str] = {
    "MY_MODEL": "{causal}",
    "--baseline default": "--baseline {causal}",
    "ID": "1",
}
"""Placeholders and embedded defaults -> values ({causal}: a tiny causal LM folder)."""

EXTRA: dict[str, tuple[str, ...]] = {
    "train reward": ("max_steps=2", "batch_size=4"),
    "train dpo": ("max_steps=2", "batch_size=4"),
    "eval reward": (),
    "eval policy": ("max_new_tokens=8", "n_boot=200"),
    "generate": ("--max-new-tokens", "12"),
}
"""Trailing settings per command that keep a tiny run quick."""

DEFAULT_MODELS = {"train reward": "{encoder}", "train dpo": "{causal}"}
"""Commands whose docs rely on an embedded default model get ``--model`` tiny, if not given."""

TOPICS = ["tea", "rain", "maps", "bees", "salt", "tides", "ink", "glass", "wool", "clocks",
          "bread", "moss", "kites", "iron", "owls", "snow", "jazz", "chess", "rust", "wheat"]


def _prefs() -> str:
    """40 preference pairs on distinct prompts (no near duplicates: the audit gates leakage)."""
    rows = []
    for i, topic in enumerate(TOPICS * 2):
        ask = ["Explain", "Describe"][i // len(TOPICS)]
        rows.append({"prompt": f"{ask} {topic} to a child in one sentence, example {i}.",
                     "chosen": f"{topic.capitalize()} is something you can see and learn about.",
                     "rejected": "no"})
    return "".join(json.dumps(r) + "\n" for r in rows)


def _prompts(n: int, offset: int) -> str:
    return "".join(json.dumps({"prompt": f"Give one fact about {t}.", "category": "facts"}) + "\n"
                   for t in TOPICS[offset:offset + n])


def _mixed() -> str:
    """Pairs, ratings, thumbs and an implicit-ready mix for the snapshot-kind examples."""
    rows = [json.loads(line) for line in _prefs().splitlines()[:10]]
    rows += [{"prompt": f"Rate an answer about {t}.", "response": f"{t} is nice.",
              "scores": {"helpful": 3}} for t in TOPICS[:4]]
    rows += [{"prompt": f"Thumbs on {t}?", "completion": f"Yes, {t}.", "label": i % 2 == 0}
             for i, t in enumerate(TOPICS[4:10])]
    return "".join(json.dumps(r) + "\n" for r in rows)


FILES = {
    # The records docs/privacy.md shows; its Consent section runs on them too.
    "people.jsonl": lambda: _section_file("people.jsonl", RUN["privacy-segments"]) or "",
    "my_prefs.jsonl": _prefs,
    "my_prompts.jsonl": lambda: _prompts(8, 0),
    "my_heldout_prompts.jsonl": lambda: _prompts(6, 8),
    "mixed.jsonl": _mixed,
}
"""The user's files the docs assume; ``snapshot.toml`` comes from the doc's own toml block."""


# --- reading the docs ---------------------------------------------------------------------

@dataclass
class Fenced:
    doc: str
    heading: str
    lang: str
    text: str
    commands: list[str] = field(default_factory=list)


def fenced_blocks(path: Path) -> list[Fenced]:
    """Every fenced block of a markdown file with its section heading and language."""
    out: list[Fenced] = []
    heading, lang, lines, inside = "", "", [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            if inside:
                text = "\n".join(lines)
                out.append(Fenced(str(path.relative_to(ROOT)), heading, lang, text,
                                  commands(text)))
            inside, lang, lines = not inside, line[3:].strip(), []
        elif inside:
            lines.append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    return out


def commands(text: str) -> list[str]:
    """The ``prefline ...`` commands of a shell block: continuation lines joined, comments
    and environment assignments dropped."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        if not re.match(r"\s*(?:[A-Z_]+=\S*\s+)*prefline\s", line):
            continue  # output, prose or another program: not ours to run
        words = shlex.split(line, comments=True)
        while re.fullmatch(r"[A-Z_]+=.*", words[0]):
            words = words[1:]
        out.append(shlex.join(words))
    return out


def _block_key(block: Fenced) -> tuple[str, str]:
    return block.doc, block.commands[0]


def _excused(block: Fenced) -> str | None:
    for (doc, start), why in NOT_RUN.items():
        if doc == block.doc and block.commands[0].startswith(start):
            return why
    return None


def readme_inline_commands() -> list[str]:
    """Complete ``prefline ...`` commands written inline in README prose (code spans may
    wrap across lines)."""
    text = (ROOT / "README.md").read_text()
    spans = re.findall(r"`(prefline [^`]+)`", text)
    return [" ".join(s.split()) for s in spans]


# --- running -------------------------------------------------------------------------------

def _expand(command: str, models: dict[str, str]) -> list[str]:
    """The docs' command with :data:`WORDS`, :data:`DEFAULT_MODELS` and :data:`EXTRA` applied."""
    for old, new in WORDS.items():
        command = re.sub(rf"(?<![\w/.-]){re.escape(old)}(?![\w/.-])", new, command)
    words = [w.format(**models) for w in shlex.split(command)]
    verb = " ".join(words[1:3]) if words[1] in ("train", "eval") else words[1]
    if verb in DEFAULT_MODELS and "--model" not in words:
        words += ["--model", DEFAULT_MODELS[verb].format(**models)]
    return [sys.executable, "-m", "prefline", *words[1:], *EXTRA.get(verb, ())]


def _run(argv: list[str], cwd: Path, env: dict[str, str], shown: str) -> str | None:
    """None when the command exits 0, else what failed (the command as documented, as run,
    and the end of its stderr)."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        return None
    return (f"`{shown}` exited {proc.returncode}\nran: {shlex.join(argv[2:])}\n"
            f"{proc.stderr[-3000:]}")


def _section_file(name: str, spec: Block) -> str | None:
    """A file the section itself shows (e.g. ``snapshot.toml`` from its toml block)."""
    suffix = Path(name).suffix.lstrip(".")
    shown = [b for b in fenced_blocks(ROOT / spec.doc)
             if b.heading == spec.heading and b.lang == suffix]
    return shown[0].text + "\n" if shown else None


def run_block(block_id: str, models: dict[str, str], folder: Path) -> str | None:
    """Run one :data:`RUN` entry in ``folder`` (its own PREFLINE_HOME); None when every
    command exits 0, else the first failure."""
    spec = RUN[block_id]
    blocks = [b for b in fenced_blocks(ROOT / spec.doc)
              if b.heading == spec.heading and b.commands]
    if not blocks:
        return f"{spec.doc} has no command block under '## {spec.heading}'"
    folder.mkdir(parents=True)
    for name in spec.files:
        text = FILES[name]() if name in FILES else _section_file(name, spec)
        if text is None:
            return f"no content for {name}"
        (folder / name).write_text(text)
    env = {**os.environ, "PREFLINE_HOME": str(folder / "home"), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200",
           "PREFLINE_PASSWORD": "s3cret-pass"}  # `users add` reads it instead of prompting
    for var in ("PREFLINE_DB", "PREFLINE_CACHE"):  # the docs' defaults: all under the home
        env.pop(var, None)
    todo = [(c, folder) for c in (*spec.setup, *(c for b in blocks for c in b.commands),
                                  *spec.after)]
    todo += [(c, ROOT) for c in spec.cwd_repo]
    for command, cwd in todo:
        failed = _run(_expand(command, models), cwd, env, command)
        if failed:
            return failed
    return None


@pytest.fixture(scope="module")
def block_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Every RUN block, two at a time (each block's commands in order): the blocks are
    independent, and a 2-core machine then finishes them in about the time of the longest."""
    from prefline.models.tiny import save_tiny

    base = tmp_path_factory.mktemp("docs")
    models = {"causal": str(save_tiny("causal", base / "causal")),
              "encoder": str(save_tiny("encoder", base / "encoder"))}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {b: pool.submit(run_block, b, models, base / b) for b in RUN}
        return {b: f.result() for b, f in futures.items()}


@pytest.mark.parametrize("block_id", list(RUN))
def test_doc_commands_run(block_id: str, block_results: dict[str, str | None]) -> None:
    failed = block_results[block_id]
    assert failed is None, f"{RUN[block_id].doc} '## {RUN[block_id].heading}': {failed}"


def test_every_command_block_is_run_or_excused() -> None:
    """A new command block in the docs needs an entry in RUN or NOT_RUN (with a reason)."""
    run_sections = {(b.doc, b.heading) for b in RUN.values()}
    loose = [f"{b.doc} '## {b.heading}': {b.commands[0]}"
             for path in DOCS for b in fenced_blocks(path)
             if b.commands and (b.doc, b.heading) not in run_sections and _excused(b) is None]
    assert not loose, "command blocks neither run nor excused:\n" + "\n".join(loose)
    stale = [key for key in NOT_RUN
             if not any(b.commands and _block_key(b)[0] == key[0]
                        and b.commands[0].startswith(key[1])
                        for path in DOCS for b in fenced_blocks(path))]
    assert not stale, f"NOT_RUN entries whose block is gone: {stale}"


def test_every_readme_inline_command_is_run_or_excused() -> None:
    ran = {" ".join(c.split()) for b in RUN.values() for c in (*b.after, *b.cwd_repo)}
    inline = readme_inline_commands()
    loose = [c for c in inline if c not in ran and c not in NOT_RUN_INLINE]
    assert not loose, f"README inline commands neither run nor excused: {loose}"


def test_command_extraction() -> None:
    text = ("prefline import a.jsonl   # a comment\n#   prefline skipped\n"
            "OMP_NUM_THREADS=1 prefline train dpo --data x \\\n    --out y\nmake demo")
    assert commands(text) == ["prefline import a.jsonl", "prefline train dpo --data x --out y"]
