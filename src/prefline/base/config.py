"""One config system: nested frozen dataclasses, documented by attribute docstrings.

A stage's config is a frozen dataclass whose fields may themselves be frozen dataclasses
(e.g. ``DPOConfig.train: TrainConfig``). Each field's documentation is the string literal
right below it (an *attribute docstring*, as in litgpt); :func:`settings` reads them with
``ast`` so ``--help``, ``prefline config show`` and the docs all say the same thing.

Values reach a config in one way, lowest priority first: dataclass defaults → ``--config
FILE`` (TOML, YAML or JSON; nested tables or flat keys) → ``key=value`` overrides → explicit
flags. :func:`build` coerces every value with :func:`coerce` (the only string-to-type
converter in prefline) and the dataclasses validate themselves in ``__post_init__``, so a bad
setting fails before any model loads.

Keys: a leaf field is addressed by its name (``lr``) when that name is unique in the tree,
and always by its dotted path (``train.lr``).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from prefline.base.errors import PreflineError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One leaf field of a (nested) config dataclass."""

    path: tuple[str, ...]
    hint: Any
    default: Any
    doc: str
    required: bool = False

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def name(self) -> str:
        return self.path[-1]

    def type_name(self) -> str:
        return _type_name(self.hint)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` from the string literals that follow each annotated field."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nested(hint: Any) -> type | None:
    """The dataclass type of a nested-config field (``X`` or ``X | None``), else None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    target = args[0] if _is_optional(hint) and len(args) == 1 else hint
    return target if isinstance(target, type) and dataclasses.is_dataclass(target) else None


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and \
        type(None) in typing.get_args(hint)


@functools.cache
def settings(cls: type) -> tuple[Setting, ...]:
    """Every leaf setting of ``cls``, nested configs flattened depth-first."""
    out: list[Setting] = []
    docs, hints = field_docs(cls), _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints[f.name]
        sub = _nested(hint)
        if sub is not None:
            # A stage may give its nested config its own defaults (a default_factory such as
            # ``TrainConfig(lr=...)``): those, not the nested class's, are the defaults shown.
            inst = _field_default(f)
            out.extend(dataclasses.replace(s, path=(f.name, *s.path),
                                           default=_walk(inst, s.path) if inst else s.default)
                       for s in settings(sub))
            continue
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = (None if missing else f.default if f.default is not dataclasses.MISSING
                   else f.default_factory())  # type: ignore[misc,operator]
        out.append(Setting((f.name,), hint, default, docs.get(f.name, ""), missing))
    return tuple(out)


def _field_default(f: dataclasses.Field[Any]) -> Any:
    """The default value of a field (calling its default_factory), or None when it has none."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _walk(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def setting_index(cls: type) -> dict[str, Setting]:
    """Lookup by dotted path and, where unique, by leaf name."""
    all_settings = settings(cls)
    index = {s.key: s for s in all_settings}
    names: dict[str, list[Setting]] = {}
    for s in all_settings:
        names.setdefault(s.name, []).append(s)
    index.update({n: group[0] for n, group in names.items() if len(group) == 1 and n not in index})
    return index


def coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` (a string from the command line, or a TOML/YAML/JSON value) as type ``hint``."""
    origin = typing.get_origin(hint)
    if _is_optional(hint):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
        origin = typing.get_origin(hint)
    try:
        if origin is Literal:
            choices = typing.get_args(hint)
            match = [c for c in choices if str(c) == str(value)]
            if not match:
                raise PreflineError(f"expected one of {', '.join(map(str, choices))}, got "
                                    f"{value!r}", field=key)
            return match[0]
        if hint is bool:
            return _bool(value)
        if hint in (int, float):
            if isinstance(value, bool):
                raise ValueError(value)
            number = hint(value)
            if hint is int and isinstance(value, float) and value != number:
                raise ValueError(value)
            return number
        if hint is str:
            if not isinstance(value, str | int | float):
                raise ValueError(value)
            return str(value)
        if hint is Path:
            return Path(value)
        if origin is tuple:
            return _tuple(value, hint, key)
        if origin is dict:
            return _dict(value, hint, key)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise PreflineError(f"expected {_type_name(hint)}, got {value!r}", field=key) from None
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text not in _TRUE | _FALSE:
        raise ValueError(value)
    return text in _TRUE


def _tuple(value: Any, hint: Any, key: str) -> tuple[Any, ...]:
    if isinstance(value, str):
        value = json.loads(value) if value.startswith("[") else \
            [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        raise ValueError(value)
    item = typing.get_args(hint)[0] if typing.get_args(hint) else str
    return tuple(coerce(v, item, key) for v in value)


def _dict(value: Any, hint: Any, key: str) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError(value)
    args = typing.get_args(hint)
    item = args[1] if len(args) == 2 else Any
    return {str(k): v if item is Any else coerce(v, item, f"{key}.{k}") for k, v in value.items()}


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "|".join(map(str, typing.get_args(hint)))
    if _is_optional(hint):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return " | ".join(_type_name(a) for a in rest) + " | none"
    if typing.get_origin(hint) is tuple:
        return "comma-separated list"
    if typing.get_origin(hint) is dict:
        return "JSON object"
    return getattr(hint, "__name__", str(hint))


def flatten(values: Mapping[str, Any], index: Mapping[str, Setting] | None = None,
            prefix: str = "") -> dict[str, Any]:
    """Nested tables (``{"train": {"lr": 1e-4}}``) into dotted keys (``train.lr``); a table
    whose key is a dict-typed setting in ``index`` (e.g. ``head_weights``) stays whole."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{str(k).replace('-', '_')}"
        found = (index or {}).get(key)
        if isinstance(v, Mapping) and not (found and typing.get_origin(found.hint) is dict):
            out.update(flatten(v, index, key + "."))
        else:
            out[key] = v
    return out


def build(cls: type, values: Mapping[str, Any] | None = None, *, base: Any = None,
          command: str | None = None) -> Any:
    """An instance of ``cls`` from ``base`` (or the defaults) updated with ``values``.

    ``values`` holds flat keys (leaf names or dotted paths) or nested tables; unknown keys
    and badly typed values raise :class:`PreflineError` naming the key.
    """
    return _assemble(cls, base, _updates(cls, values or {}, command))


def _updates(cls: type, values: Mapping[str, Any],
             command: str | None) -> dict[tuple[str, ...], Any]:
    """``values`` coerced and keyed by setting path; unknown keys raise PreflineError."""
    index = setting_index(cls)
    updates: dict[tuple[str, ...], Any] = {}
    for key, value in flatten(values, index).items():
        found = index.get(key)
        if found is None:
            see = f"; see `prefline {command} --help`" if command else ""
            raise PreflineError(f"unknown setting{see}", field=key)
        updates[found.path] = coerce(value, found.hint, found.key)
    return updates


def _assemble(cls: type, base: Any, updates: dict[tuple[str, ...], Any]) -> Any:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        current = getattr(base, f.name) if base is not None else dataclasses.MISSING
        sub = _nested(hints[f.name])
        if sub is not None:
            inner = {p[1:]: v for p, v in updates.items() if p[0] == f.name and len(p) > 1}
            if inner or current is dataclasses.MISSING or current is not None:
                start = _field_default(f) if current is dataclasses.MISSING else current
                kwargs[f.name] = _assemble(sub, start, inner)
            else:
                kwargs[f.name] = current
        elif (f.name,) in updates:
            kwargs[f.name] = updates[(f.name,)]
        elif current is not dataclasses.MISSING:
            kwargs[f.name] = current
    try:
        return cls(**kwargs)
    except TypeError as exc:
        missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in kwargs]
        raise PreflineError(f"missing required setting ({exc})",
                            field=missing[0] if missing else None) from None


def read_file(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise PreflineError(f"cannot read config file ({exc.strerror})", path=str(p)) from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (ValueError, ImportError) as exc:  # tomllib/json/yaml errors are ValueErrors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PreflineError(f"not a valid config file ({first})", path=str(p)) from None
    except Exception as exc:  # yaml.YAMLError does not derive from ValueError
        raise PreflineError(f"not a valid config file ({exc})", path=str(p)) from None
    if not isinstance(data, dict):
        raise PreflineError("a config file must hold a table of settings", path=str(p))
    return data


def load(cls: type, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
         *, command: str | None = None, base: Any = None) -> Any:
    """Defaults (or ``base``, a preset instance of ``cls``) → file → overrides, merged first and validated once, so a rule across
    settings (e.g. exactly one data source, one from the file and one from a flag) sees them
    all. An error in a value that came from the file names the file."""
    from_file: dict[tuple[str, ...], Any] = {}
    if path is not None:
        data = read_file(path)
        try:
            from_file = _updates(cls, data, command)
        except PreflineError as exc:
            raise PreflineError(exc.message, path=str(path), field=exc.field) from None
    given = _updates(cls, overrides or {}, command)
    try:
        return _assemble(cls, base, {**from_file, **given})
    except PreflineError as exc:
        found = setting_index(cls).get(exc.field or "")
        if path is not None and found is not None and found.path in from_file \
                and found.path not in given:
            raise PreflineError(exc.message, path=str(path), field=exc.field) from None
        raise


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict (tuples → lists, Paths → str): JSON/TOML-ready."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def to_toml(cfg: Any) -> str:
    """The settings as a TOML file, each with its docstring; unset (None) values commented."""
    lines: list[str] = []
    _toml_table(type(cfg), cfg, (), lines)
    return "\n".join(lines).strip() + "\n"


def _toml_table(cls: type, cfg: Any, path: tuple[str, ...], lines: list[str]) -> None:
    import tomli_w

    docs, hints = field_docs(cls), _hints(cls)
    tables = []
    if path:
        lines.append(f"\n[{'.'.join(path)}]")
    for f in dataclasses.fields(cls):
        value = getattr(cfg, f.name)
        if _nested(hints[f.name]) is not None and value is not None:
            tables.append(f)
            continue
        if docs.get(f.name):
            lines.extend("# " + ln for ln in textwrap.wrap(docs[f.name], 92))
        if value is None:
            lines.append(f"# {f.name} =  (unset)")
        else:
            plain = to_dict(cfg)[f.name]
            if isinstance(plain, dict):  # inline, so later keys stay in this table
                inner = ", ".join(tomli_w.dumps({k: v}).strip() for k, v in plain.items())
                lines.append(f"{f.name} = {{ {inner} }}" if inner else f"{f.name} = {{}}")
            else:
                lines.append(tomli_w.dumps({f.name: plain}).strip())
    for f in tables:
        _toml_table(type(getattr(cfg, f.name)), getattr(cfg, f.name), (*path, f.name), lines)


def check_at_least(cfg: Any, minimum: int, *names: str) -> None:
    """Refuse any of ``cfg``'s settings ``names`` below ``minimum`` (None is left alone)."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value < minimum:
            raise PreflineError(f"expected an integer >= {minimum}, got {value}", field=name)


def check_sampling(temperature: float, top_p: float) -> None:
    """The sampling settings every generating stage shares: temperature >= 0 (0 = greedy)
    and top_p in (0, 1]."""
    if temperature < 0:
        raise PreflineError(f"expected a temperature >= 0, got {temperature}",
                            field="temperature")
    if not 0.0 < top_p <= 1.0:
        raise PreflineError(f"expected a number in (0, 1], got {top_p}", field="top_p")
