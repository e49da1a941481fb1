"""Commands derived from stage configs: every setting is an option, documented once.

A stage module declares ``stage_command("dpo", DPOConfig, body, app=train_app,
command="train dpo", ...)``; this module turns each leaf setting of the (nested) config
dataclass into an option whose help is the field's attribute docstring plus its default, and adds the options every
stage shares: ``--config FILE`` (TOML/YAML/JSON), ``--db``, ``--out``, ``--device``,
``--json`` and trailing ``key=value`` overrides. Values are merged and validated by
:func:`prefline.base.config.load`, so ``--help``, config files and ``prefline config show``
cannot disagree. typer builds the command from the derived signature (its public API: an
``Annotated`` option per parameter); the walk over the dataclass is :mod:`prefline.base.config`.
A body is :func:`run_stage`: run, record (:func:`artifact` or :func:`unrecorded`), print.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from typer.core import TyperArgument, TyperOption

from prefline.base import config
from prefline.base.cache import FILES_HELP
from prefline.base.distributed import rank
from prefline.base.errors import PreflineError
from prefline.base.progress import Reporter
from prefline.base.stage import StageResult
from prefline.cli.common import default_run_dir, parse_overrides, print_json
from prefline.registry import record_result
from prefline.store.context import Context, Store

Body = Callable[..., None]
R = TypeVar("R", bound=StageResult)
C = TypeVar("C")
A = TypeVar("A")


@dataclasses.dataclass(frozen=True)
class StageCommand:
    """A derived command: its stage name (for ``config show``), command and config class."""

    stage: str
    command: str
    config_cls: type


STAGE_COMMANDS: dict[str, StageCommand] = {}
"""Every derived command by stage name."""

_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}

_TYPE_NAMES = {"str": "TEXT", "int": "INT", "float": "FLOAT", "Path": "PATH"}
_typer_type_rich: dict[type, Callable[[Any, Any], str | None]] = {
    cls: cls.display_type_rich for cls in (TyperOption, TyperArgument)}


def _display_type_rich(self: Any, ctx: Any) -> str | None:
    """The type column of ``--help``: nothing for flags (typer 0.29 prints ``<bool>`` for
    ``--json``, ``--help`` and every ``--x/--no-x``), click's TEXT/INT/... for the rest."""
    if getattr(self, "is_flag", False) or getattr(self, "count", False):
        return None
    original = _typer_type_rich[TyperArgument if isinstance(self, TyperArgument) else TyperOption]
    shown = original(self, ctx)
    if shown and shown.startswith("<") and shown.endswith(">"):
        return _TYPE_NAMES.get(shown[1:-1], shown[1:-1].upper())
    return shown


# Patched once for every command (derived or hand-written): typer has no setting for it.
TyperOption.display_type_rich = _display_type_rich  # type: ignore[method-assign,assignment]
TyperArgument.display_type_rich = _display_type_rich  # type: ignore[method-assign,assignment]


def setting_params(cls: type, skip: tuple[str, ...] = (),
                   flags: dict[str, tuple[str, ...]] | None = None) -> list[inspect.Parameter]:
    """One option per leaf setting: ``--lr`` when the leaf name is unique, else ``--train.lr``;
    bools are ``--x/--no-x``. ``flags`` gives a (non-bool) setting other option names, e.g.
    ``{"in_file": ("--in",)}`` where the natural name is a Python keyword. Every option
    defaults to None (= not given)."""
    index = config.setting_index(cls)
    params: list[inspect.Parameter] = []
    for s in config.settings(cls):
        if s.key in skip or s.name in skip:
            continue
        unique = index.get(s.name) is s
        flag = (s.name if unique else s.key).replace("_", "-")
        default = "required" if s.required else _show(s.default)
        shown = s.default is None and "default" in s.doc.lower()  # the doc says it better
        text = s.doc if shown else f"{s.doc} (default: {default})".strip()
        if s.hint is bool:
            opt = typer.Option(f"--{flag}/--no-{flag}", help=text, show_default=False)
            hint: Any = Annotated[bool | None, opt]
        else:
            metavar = _metavar(s.hint)
            names = (flags or {}).get(s.key) or (f"--{flag}",)
            opt = typer.Option(*names, help=text, metavar=metavar, show_default=False)
            hint = Annotated[str | None, opt]
        params.append(inspect.Parameter(_dest(s.key), inspect.Parameter.KEYWORD_ONLY,
                                        default=None, annotation=hint))
    return params


def _metavar(hint: Any) -> str:
    """TEXT, INT, FLOAT, LIST, JSON or the choices of a Literal (``none`` stays implicit)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if type(None) in typing.get_args(hint) and len(args) == 1:
        hint = args[0]
    if typing.get_origin(hint) is Literal:
        return "|".join(map(str, typing.get_args(hint)))
    names = {str: "TEXT", int: "INT", float: "FLOAT", Path: "PATH"}
    if hint in names:
        return names[hint]
    return {tuple: "LIST", dict: "JSON"}.get(typing.get_origin(hint), "VALUE")


def _argument(s: config.Setting) -> inspect.Parameter:
    hint = Annotated[str, typer.Argument(help=s.doc, metavar=s.name.upper(), show_default=False)]
    return inspect.Parameter(_dest(s.key), inspect.Parameter.KEYWORD_ONLY, annotation=hint)


def _dest(key: str) -> str:
    return "cfg__" + key.replace(".", "__")


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) or "empty"
    if isinstance(value, dict):
        return str(value) if value else "{}"
    return str(value)


def _common(out_help: str | None, db_option: bool = True) -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    specs: list[tuple[str, Any, Any]] = [
        ("config_file", Annotated[str | None, typer.Option(
            "--config", help="TOML, YAML or JSON settings file; flags and key=value win over "
                             "it.")], None),
        ("db", Annotated[str | None, typer.Option(
            "--db", help="Store URL or SQLite path (default: $PREFLINE_DB or the user data "
                         "dir).")], None),
        ("device", Annotated[str, typer.Option(
            "--device", help="auto (CUDA when present, else CPU) | cpu | cuda | cuda:N.")],
         "auto"),
        ("as_json", Annotated[bool, typer.Option(
            "--json", help="Print machine-readable JSON (and no progress bars).")], False),
    ]
    if not db_option:
        specs = [spec for spec in specs if spec[0] != "db"]
    if out_help:
        specs.insert(0, ("out", Annotated[str | None, typer.Option(
            "--out", help=f"{out_help} {FILES_HELP}")],
                         None))
    return [inspect.Parameter(n, kw, default=d, annotation=h) for n, h, d in specs]


def stage_command(stage: str, cls: type, body: Body, *, app: typer.Typer,
                  command: str, help: str,
                  out_help: str | None = None, extra: list[inspect.Parameter] | None = None,
                  skip: tuple[str, ...] = (),
                  flags: dict[str, tuple[str, ...]] | None = None,
                  positional: tuple[str, ...] = (),
                  preset: Callable[[Any], Any] | None = None, db_option: bool = True) -> None:
    """Add the command for one stage to ``app`` and record it in :data:`STAGE_COMMANDS`.

    ``command`` is the full command as typed (``"train dpo"``); its last word is the name
    in ``app``. ``body(cfg, ctx, as_json=..., **extra_values)`` does the work: call the
    stage's ``run``, record the result, print. ``extra`` parameters (e.g. a positional
    path) are passed to ``body`` by name. ``positional`` names config settings taken as
    positional arguments instead of options (e.g. ``prefline import PATH``). ``preset(cfg)``
    may return a preset config that the file and flags are then applied onto instead of the
    defaults (e.g. the demo's ``--quick`` sizes). ``db_option=False`` drops ``--db`` for a
    stage that keeps its own store (the demo).
    """
    extra = extra or []
    settings = setting_params(cls, skip + positional, flags)
    args = [_argument(config.setting_index(cls)[name]) for name in positional]
    dests = {p.name: p for p in settings}

    def callback(ctx: typer.Context, **kw: Any) -> None:
        picked = {p.name: kw.pop(p.name) for p in extra}
        given = {name: kw.pop(_dest(name)) for name in positional}
        flags = {k[len("cfg__"):].replace("__", "."): v for k, v in kw.items()
                 if k in dests and v is not None}
        overrides = {**parse_overrides(ctx.args), **flags, **given}
        cfg = config.load(cls, kw["config_file"], overrides, command=command)
        start = preset(cfg) if preset is not None else None
        if start is not None:
            cfg = config.load(cls, kw["config_file"], overrides, command=command,
                              base=start)
        run_ctx = make_context(cfg, db=kw.get("db"), out=kw.get("out"), device=kw["device"],
                               quiet=kw["as_json"])
        body(cfg, run_ctx, as_json=kw["as_json"], **picked)

    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                  annotation=typer.Context)
    extra_params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in extra]
    callback.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [ctx_param, *args, *extra_params, *settings, *_common(out_help, db_option)])
    callback.__doc__ = (f"{help}\n\nEvery setting can also come from --config FILE (TOML/YAML/"
                        f"JSON) or as trailing key=value; `prefline config show {stage}` prints "
                        "the effective settings.")
    app.command(command.split()[-1], context_settings=_EXTRA)(callback)
    STAGE_COMMANDS[stage] = StageCommand(stage, command, cls)


def make_context(cfg: Any, *, db: str | None, out: str | None, device: str,
                 quiet: bool) -> Context:
    """The Context for one command: store, device, run folder, seed, progress."""
    seed = getattr(cfg, "seed", None)
    if seed is None:
        seed = getattr(getattr(cfg, "train", None), "seed", 0)
    return Context(store=Store.open(db), device=device,
                   run_dir=Path(out) if out else None, seed=int(seed or 0),
                   progress=Reporter(enabled=not quiet and rank() == 0))


def effective_config(stage: str, path: str | None, overrides: dict[str, str]) -> Any:
    """What ``prefline config show STAGE`` prints: the merged, validated config."""
    found = STAGE_COMMANDS.get(stage)
    if found is None:
        names = ", ".join(sorted(STAGE_COMMANDS))
        raise PreflineError(f"unknown stage {stage!r}; expected one of {names}", field="stage")
    return config.load(found.config_cls, path, overrides, command=f"config show {stage}")


def run_stage(run: Callable[[C, Context], R], cfg: C, ctx: Context, *, as_json: bool,
              record: Callable[[Context, R, C], tuple[A, dict[str, Any]]],
              summary: Callable[[R, A], Iterable[str]], run_dir: str | None = None) -> R | None:
    """What every stage command's body does: ``run(cfg, ctx)``, ``record`` the result, then
    print it: ``--json`` prints ``result.to_json()`` plus the fields ``record`` returned,
    otherwise the ``summary(result, recorded)`` lines.

    ``record(ctx, result, cfg)`` returns what it recorded (for the summary: an artifact id,
    say) and the fields it adds to the JSON; use :func:`artifact` or :func:`unrecorded`.
    ``run_dir`` names the default run folder (``<data dir>/runs/<run_dir>-<time>``) used
    when --out is not given. Under torchrun every rank runs the stage and only rank 0
    records and prints; the other ranks get None, rank 0 the result.
    """
    if run_dir is not None and ctx.run_dir is None:
        ctx = ctx.with_run_dir(default_run_dir(run_dir))
    result = run(cfg, ctx)
    if rank() != 0:
        return None
    recorded, fields = record(ctx, result, cfg)
    if as_json:
        print_json({**result.to_json(), **fields})
    else:
        for line in summary(result, recorded):
            typer.echo(line)
    return result


def artifact(name: str | None = None, actor: str = "prefline"
             ) -> Callable[[Context, StageResult, Any], tuple[int, dict[str, Any]]]:
    """The usual ``record`` for :func:`run_stage`: the result becomes one registry artifact
    (:func:`prefline.registry.record_result`); its id goes to the summary and to the JSON
    as ``artifact_id``."""

    def record(ctx: Context, result: StageResult, cfg: Any) -> tuple[int, dict[str, Any]]:
        art_id = record_result(ctx.store, result, cfg, name=name, actor=actor)
        return art_id, {"artifact_id": art_id}

    return record


def unrecorded(ctx: Context, result: StageResult, cfg: Any) -> tuple[None, dict[str, Any]]:
    """``record`` for :func:`run_stage` when the stage's output is not an artifact."""
    return None, {}
