"""Stage cache: a finished stage is reused when its inputs hash the same.

Each stage writes ``stages/<name>.json``: the hash of its inputs (its config section plus
the output hashes of the stages it reads), its outputs, the files it produced and how long
it took. On a re-run the stage is skipped when that manifest exists, the input hash matches
and every listed file is still there; otherwise it runs again (into a fresh work folder), and
every later stage's input hash changes with it. Manifests are written last and atomically,
so a stage killed half-way is simply re-run.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefline.base.hashing import content_hash


@dataclass
class CachedStage:
    """One demo step's outputs, whether it ran now or was reused from its manifest."""

    name: str
    outputs: dict[str, Any]
    output_hash: str
    seconds: float
    reused: bool
    cpu_seconds: float = 0.0


class StageCache:
    """Runs or reuses stages under ``root`` (the demo's ``--out`` folder)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifests = root / "stages"
        self.manifests.mkdir(parents=True, exist_ok=True)

    def _load(self, name: str, input_hash: str) -> CachedStage | None:
        path = self.manifests / f"{name}.json"
        if not path.exists():
            return None
        try:
            m = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if m.get("input_hash") != input_hash:
            return None
        if not all((self.root / f).exists() for f in m.get("files", [])):
            return None
        return CachedStage(name, m["outputs"], m["output_hash"], float(m["seconds"]), True,
                           float(m.get("cpu_seconds", 0.0)))

    def run(self, name: str, inputs: dict[str, Any],
            fn: Callable[[Path], tuple[dict[str, Any], list[str]]]) -> CachedStage:
        """Reuse ``name`` if cached for ``inputs``; else run ``fn(work_dir)``.

        ``fn`` returns ``(outputs, files)``: JSON-able outputs and the paths (relative to the
        root) it wrote, which must still exist for the cache entry to count.
        """
        input_hash = content_hash(inputs)
        cached = self._load(name, input_hash)
        if cached is not None:
            return cached
        work = self.root / name
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        start, cpu_start = time.perf_counter(), time.process_time()
        outputs, files = fn(work)
        seconds = time.perf_counter() - start
        # CPU seconds of this process: on a shared machine wall time overstates the cost.
        cpu = time.process_time() - cpu_start
        output_hash = content_hash({"outputs": outputs, "files": [
            _file_digest(self.root / f) for f in files]})
        manifest = {"name": name, "input_hash": input_hash, "output_hash": output_hash,
                    "outputs": outputs, "files": files, "seconds": round(seconds, 3),
                    "cpu_seconds": round(cpu, 3),
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = self.manifests / f".{name}.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        tmp.replace(self.manifests / f"{name}.json")
        return CachedStage(name, outputs, output_hash, seconds, False, cpu)


def _file_digest(path: Path) -> str:
    """Content hash of a file, or of a folder's file names and sizes (model folders are big)."""
    if path.is_dir():
        return content_hash(sorted((str(p.relative_to(path)), p.stat().st_size)
                                   for p in path.rglob("*") if p.is_file()))
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
