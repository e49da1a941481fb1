"""``prefline train dpo`` (``prefline bench dpo`` lives in ``prefline.cli.bench``).

Settings come from, lowest priority first: the dataclass defaults, ``--config FILE`` (JSON
or TOML, flat or with ``[dpo]``/``[train]`` tables), ``key=value`` / ``--key value``
overrides after the options, then the explicit flags. Every key is validated against
``DPOConfig`` or ``TrainConfig`` before any model is loaded.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from prefline.base.errors import PreflineError
from prefline.cli.common import (
    DbOption,
    JsonOption,
    default_run_dir,
    parse_overrides,
    print_json,
    read_config,
    train_app,
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Turn a string from the command line into the field's type."""
    if not isinstance(value, str):
        return value
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args and value.lower() in ("none", "null"):
        return None
    target = args[0] if args else hint
    try:
        if target is bool:
            if value.lower() not in _TRUE | _FALSE:
                raise ValueError(value)
            return value.lower() in _TRUE
        return target(value) if target in (int, float, str) else value
    except ValueError:
        raise PreflineError(f"expected {getattr(target, '__name__', target)}, got {value!r}",
                            field=key) from None


def _split_settings(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route each key to DPOConfig or TrainConfig, typed; unknown keys are an error."""
    from prefline.train.dpo import DPOConfig
    from prefline.train.engine import TrainConfig

    hints = {cls: typing.get_type_hints(cls) for cls in (DPOConfig, TrainConfig)}
    dpo: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for key, value in raw.items():
        key = key.replace("-", "_")
        if key in hints[DPOConfig]:
            dpo[key] = _coerce(value, hints[DPOConfig][key], key)
        elif key in hints[TrainConfig]:
            train[key] = _coerce(value, hints[TrainConfig][key], key)
        else:
            raise PreflineError("unknown setting; see `prefline train dpo --help`", field=key)
    return dpo, train


def load_dpo_pairs(data: str | None, snapshot: str | None, db: str | None,
                   ) -> tuple[list[Any], str, int | None]:
    """(pairs, content hash of the source, snapshot id) from a file or a snapshot's train split.

    Rankings expand into their implied pairs; a snapshot's hash is its own content hash.
    """
    if (data is None) == (snapshot is None):
        raise PreflineError("give exactly one of --data FILE or --snapshot ID", field="data")
    if data is not None:
        from prefline.base.hashing import content_hash
        from prefline.formats.load import load_pairs

        pairs = load_pairs(data)
        return pairs, content_hash([[p.prompt, p.chosen, p.rejected, p.tie] for p in pairs]), None
    from prefline.formats.examples import PreferencePair, RankingExample
    from prefline.formats.load import ranking_pairs
    from prefline.store.snapshots import get_snapshot, snapshot_examples

    snap = get_snapshot(snapshot, db)
    pairs = []
    for ex in snapshot_examples(snap.id, "train", db):
        if isinstance(ex, PreferencePair):
            pairs.append(ex)
        elif isinstance(ex, RankingExample):
            pairs.extend(ranking_pairs(ex))
    if not pairs:
        raise PreflineError(f"snapshot {snapshot} holds no preference pairs", field="snapshot")
    return pairs, snap.content_hash, snap.id


@train_app.command(
    "dpo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_dpo_cmd(
    ctx: typer.Context,
    data: Annotated[str | None, typer.Option("--data", help="Pairs file (jsonl, hh, csv, parquet, hf).")] = None,
    snapshot: Annotated[str | None, typer.Option("--snapshot", help="Store snapshot id.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Hub id or folder (default: embedded SmolLM2-135M-Instruct).")] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="sigmoid|ipo|cdpo|robust|hinge|simpo|orpo|kto")] = None,
    beta: Annotated[float | None, typer.Option("--beta")] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--full", help="LoRA adapters or full fine-tuning.")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Run folder (default: under the data dir).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="JSON/TOML settings file.")] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Prompt + response tokens.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a policy with DPO (or IPO, cDPO, rDPO, hinge, SimPO, ORPO, KTO).

    Extra `key=value` or `--key value` pairs set any DPOConfig/TrainConfig field,
    e.g. `lr=1e-6 batch_size=4 max_steps=50 precision=bf16`.
    """
    raw = read_config(config, sections=("dpo", "train"))
    raw.update(parse_overrides(ctx.args))
    flags = {"model": model, "loss": loss, "beta": beta, "lora": lora, "max_length": max_length}
    raw.update({k: v for k, v in flags.items() if v is not None})
    dpo_kw, train_kw = _split_settings(raw)
    from prefline.base.progress import Reporter
    from prefline.train.dpo import DPOConfig, train_dpo
    from prefline.train.engine import TrainConfig

    cfg, train_cfg = DPOConfig(**dpo_kw), TrainConfig(**train_kw)
    pairs, source_hash, snapshot_id = load_dpo_pairs(data, snapshot, db)
    result = train_dpo(pairs, cfg, train_cfg, run_dir=Path(out or default_run_dir("dpo")),
                       progress=Reporter(not as_json), db=db, snapshot_hash=source_hash,
                       snapshot_id=snapshot_id)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if as_json:
        print_json(result.summary)
        return
    s = result.summary
    held = s.get("heldout") or {}
    typer.echo(f"trained {s['steps']} steps on {s['pairs']['train']} pairs; held-out implicit "
               f"reward accuracy {held.get('accuracy', float('nan')):.3f} on "
               f"{s['pairs']['heldout']} pairs")
    for note in result.report.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"model: {s['model']}  (artifact {s.get('artifact_id')})")


def register(app: typer.Typer) -> None:
    """Commands are added to the shared train group at import time."""
