"""Reference log-probs: computed once, stored on disk, reused by every later run.

The key is the content hash of (the encoded token ids of every pair, a fingerprint of the
reference weights, the precision), so any change to data, tokenizer, truncation, model or
precision gives a new entry, and nothing else does. DPO then never keeps a second model in
memory: full fine-tuning computes them with the policy before its first step (policy ==
reference then), LoRA with the adapters disabled.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from prefline.base.cache import kind_dir
from prefline.base.hashing import content_hash
from prefline.train.policy_batch import Encoded, EncodedPair, EncodedSingle, pack

E = TypeVar("E", EncodedPair, EncodedSingle)


def weights_fingerprint(model: nn.Module, skip: Callable[[str], bool] = lambda n: False) -> str:
    """blake2b over every parameter/buffer name, shape, dtype and bytes (~0.5 s for 135M)."""
    digest = hashlib.blake2b(digest_size=20)
    for name, t in sorted(model.state_dict().items()):
        if skip(name):
            continue
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(pairs: Sequence[Encoded], model_fingerprint: str, precision: str) -> str:
    # [prompt, chosen, rejected] for pairs, [prompt, completion, partner] for KTO examples.
    data = content_hash([[p.prompt, *p.responses] for p in pairs])
    return content_hash({"data": data, "model": model_fingerprint, "precision": precision,
                         "version": 1})


def _compute(logps_fn: nn.Module, pairs: Sequence[Encoded], batch_pairs: int,
             autocast: AbstractContextManager[object] | None, pad_id: int,
             progress: Callable[[], None] | None) -> torch.Tensor:
    out = torch.empty(len(pairs), 2, dtype=torch.float64)
    # Similar lengths together: packing is tighter and fewer pad tokens are computed.
    order = sorted(range(len(pairs)),
                   key=lambda i: -len(pairs[i].prompt) - len(pairs[i].responses[0]))
    for s in range(0, len(order), batch_pairs):
        idx = order[s:s + batch_pairs]
        with torch.no_grad(), autocast or nullcontext():
            # The model's forward moves the batch to its device (base.distributed.place);
            # the values come back to the CPU, where the cache lives.
            logps = logps_fn(pack([pairs[i] for i in idx], pad_id=pad_id)).double().cpu()
        out[idx] = logps.view(-1, 2)
        if progress is not None:
            progress()
    return out


def reference_logps(logps_fn: nn.Module, pairs: Sequence[E], fingerprint: str,
                    precision: str, *, batch_pairs: int = 16, pad_id: int = 0,
                    autocast: AbstractContextManager[object] | None = None,
                    progress: Callable[[], None] | None = None,
                    ) -> tuple[list[E], bool]:
    """``pairs`` (EncodedPairs or EncodedSingles) with ``ref`` filled in, and whether the disk
    cache supplied them.

    ``logps_fn`` maps a PackedBatch to ``(2n,)`` summed log-probs under the reference (the
    caller disables adapters etc.); ``progress`` is called once per batch of ``batch_pairs``.
    The file is written atomically so concurrent runs and crashes never leave a partial
    entry.
    """
    path = cached_path(pairs, fingerprint, precision)
    hit = path.exists()
    if hit:
        values = torch.load(path, weights_only=True)
    else:
        values = _compute(logps_fn, pairs, batch_pairs, autocast, pad_id, progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save(values, tmp)
        os.replace(tmp, path)
    filled = [replace(p, ref=(float(v[0]), float(v[1]))) for p, v in zip(pairs, values, strict=True)]
    return filled, hit


def cached_path(pairs: Sequence[Encoded], fingerprint: str, precision: str) -> Path:
    """Where :func:`reference_logps` keeps (or would keep) the values for these inputs."""
    return kind_dir("ref-logps") / f"{cache_key(pairs, fingerprint, precision)}.pt"
