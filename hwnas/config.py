"""The one typed schema layer for config: frozen dataclasses (or keyword parameters) checked from YAML.

A config kind is a frozen dataclass whose annotations are its types and whose fields carry their
limits (`setting(default, choices=..., ge=..., gt=..., le=...)`). `parse(cls, data, where)` rejects
unknown keys (with a did-you-mean), missing required keys and wrong types; the dataclass's
`__post_init__` calls `check(self, where)` for the limits, so objects built in Python are checked too.
`parse_kwargs(fn, params, where, owner)` does the same for the keyword-only parameters of a function
(strategy parameters). Every error is one `ConfigError` line naming the file, the field, the expected
type and the valid choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from hwnas.errors import ConfigError

T = TypeVar("T")
_SCALARS = (bool, int, float, str)
_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping",
          Mapping: "a mapping", list: "a list", tuple: "a list"}


def setting(default: Any = dataclasses.MISSING, *, choices: Iterable[Any] | None = None, ge: float | None = None,
            gt: float | None = None, le: float | None = None, why: str = "", expect: str = "", **kw: Any) -> Any:
    """A dataclass field with limits that `check` enforces; `why` is appended to a range error, `expect`
    replaces the type's name in a type error (e.g. `a list of core numbers, e.g. [1]`)."""
    meta: dict[str, Any] = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le)) if v is not None}
    if choices is not None:
        meta["choices"] = tuple(choices)
    meta.update({k: v for k, v in (("why", why), ("expect", expect)) if v})
    if isinstance(default, (dict, list, set)):  # a fresh copy per instance
        kw["default_factory"] = lambda template=default: type(template)(template)
        default = dataclasses.MISSING
    return dataclasses.field(default=default, metadata=meta, **kw)


def did_you_mean(word: str, valid: Iterable[str]) -> str:
    """` (did you mean X?)` when one valid name is close to `word`, else ``."""
    close = difflib.get_close_matches(str(word), list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def reject_unknown(given: Iterable[str], valid: Iterable[str], where: str, what: str = "key(s)") -> None:
    """A ConfigError naming the first unknown key, a close valid one and all valid ones."""
    valid = sorted(valid)
    bad = sorted(set(given) - set(valid), key=str)
    if bad:
        raise ConfigError(f"{where}: unknown {what} {', '.join(map(str, bad))}{did_you_mean(bad[0], valid)}; "
                          f"valid keys: {', '.join(valid) or '(none)'}")


def typed(value: Any, kind: type, name: str, where: str) -> Any:
    """`value` if it has the type `kind` (an int is a float too; a bool is neither), else a ConfigError
    naming the field, the expected type and the file."""
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(f"{where}: {name} must be {_KINDS.get(kind, kind.__name__)}, "
                          f"got {value!r} ({type(value).__name__})")
    return float(value) if kind is float else value


def convert(value: Any, hint: Any, name: str, where: str) -> Any:
    """`value` checked against a type annotation: scalars, `X | None`, `tuple[X, ...]`, `Mapping[str, X]`,
    unions of scalars, nested config dataclasses and `Any`; lists become tuples, ints become floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return convert(value, options[0], name, where)
        for option in options:  # the first that fits; a bool is never a number
            if option in _SCALARS:
                if isinstance(value, option) and (option is bool or not isinstance(value, bool)):
                    return value
                continue
            try:
                return convert(value, option, name, where)
            except ConfigError:
                continue
        names = [_KINDS.get(typing.get_origin(o) or o, getattr(o, "__name__", str(o))) for o in options]
        kinds = f"{', '.join(names[:-1])} or {names[-1]}"
        raise ConfigError(f"{where}: {name} must be {kinds}, got {value!r} ({type(value).__name__})")
    if origin is tuple:
        items = typed(list(value) if isinstance(value, tuple) else value, list, name, where)
        return tuple(convert(v, args[0], f"{name}[{i}]", where) for i, v in enumerate(items))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            typed(value, dict, name, where)
        sub = args[1] if args else Any
        return {typed(k, str, f"{name} key", where): convert(v, sub, f"{name}.{k}", where) for k, v in value.items()}
    if origin is list:
        items = typed(value, list, name, where)
        return [convert(v, args[0] if args else Any, f"{name}[{i}]", where) for i, v in enumerate(items)]
    if dataclasses.is_dataclass(hint):
        return parse(hint, {} if value is None else value, f"{where} {name}")
    if hint in _SCALARS:
        return typed(value, hint, name, where)
    return value


def _hints(target: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target)
    except (NameError, TypeError):  # an annotation this module cannot resolve: checked as Any
        return {}


def parse(cls: type[T], data: Any, where: str, label: str = "", **extra: Any) -> T:
    """An instance of the config dataclass `cls` from a mapping (`label` names it in unknown-key errors,
    e.g. `train `); `extra` are fields set by the caller, not the file (such as `source`)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in extra}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: {label or 'this file '}must be a mapping of keys {', '.join(fields)}, "
                          f"got {type(data).__name__}")
    reject_unknown(data, fields, where, f"{label}key(s)")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        choices = fields[missing[0]].metadata.get("choices")
        hint = f" (one of {', '.join(map(str, choices))})" if choices else ""
        raise ConfigError(f"{where}: missing required key {missing[0]!r}{hint}")
    hints, inner = _hints(cls), f"{where} {label.strip()}" if label else where
    kwargs = {k: _convert_field(fields[k], v, hints.get(k, Any), inner) for k, v in data.items()}
    _check_limits(cls, kwargs, inner)  # here, so that the error names the file
    return cls(**kwargs, **extra)


def _convert_field(f: dataclasses.Field, value: Any, hint: Any, where: str) -> Any:
    try:
        return convert(value, hint, f.name, where)
    except ConfigError:
        if "expect" not in f.metadata:
            raise
        raise ConfigError(f"{where}: {f.name} must be {f.metadata['expect']}, got {value!r}") from None


def check(obj: Any, where: str) -> None:
    """Enforce the `setting` limits of a config dataclass's fields (called from its `__post_init__`)."""
    _check_limits(type(obj), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, where)


def _check_limits(cls: type, values: Mapping[str, Any], where: str) -> None:
    for f in dataclasses.fields(cls):
        value, meta = values.get(f.name), f.metadata
        if value is None or not meta:
            continue
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{where}: {f.name} {value!r} is not one of {', '.join(map(str, meta['choices']))}"
                              f"{did_you_mean(value, map(str, meta['choices']))}")
        why = f" ({meta['why']})" if meta.get("why") else ""
        for op, sign in (("ge", ">="), ("gt", ">"), ("le", "<=")):
            bound = meta.get(op)
            if bound is not None and not {"ge": value >= bound, "gt": value > bound, "le": value <= bound}[op]:
                raise ConfigError(f"{where}: {f.name} must be {sign} {bound:g}{why}, got {value!r}")


def keyword_params(fn: Callable[..., Any]) -> dict[str, Any]:
    """The keyword-only parameters of `fn` with their defaults (a strategy's tunable parameters)."""
    sig = inspect.signature(fn)
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def parse_kwargs(fn: Callable[..., Any], params: Any, where: str, owner: str) -> dict[str, Any]:
    """`params` checked against `fn`'s keyword-only parameters: unknown names (with a did-you-mean) and
    types from the annotations (else from the type of the default). Ranges stay in `fn` itself."""
    if not isinstance(params, Mapping):
        params = typed({} if params is None else params, dict, f"{owner} params", where or "python call")
    valid = keyword_params(fn)
    bad = sorted(set(params) - set(valid), key=str)
    if bad:
        raise ConfigError(f"{where + ': ' if where else ''}{owner} has no parameter(s) {', '.join(map(str, bad))}"
                          f"{did_you_mean(bad[0], valid)}; valid: {', '.join(sorted(valid)) or '(none)'}")
    hints = _hints(fn)
    out = {}
    for key, value in params.items():
        default = valid[key]
        hint = hints.get(key, type(default) if isinstance(default, _SCALARS) else Any)
        out[key] = convert(value, hint, key, where or owner)
    return out
