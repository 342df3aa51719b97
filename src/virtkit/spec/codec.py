"""Frozen dataclasses to JSON and back, for configs that cross a process boundary (the daemon's supervisor,
the native VMM process). Supports the field types those configs use: ``str``, ``int``, ``float``, ``bool``,
``Path``, ``X | None``, ``Literal``, nested dataclasses, and tuples of any of these."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from virtkit.errors import ConfigError

T = TypeVar("T")


def to_json(obj: Any) -> Any:
    """A dataclass (or a value inside one) as plain JSON data: paths become strings, tuples lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | list):
        return [to_json(v) for v in obj]
    return obj


def from_json(cls: type[T], data: Any, where: str = "") -> T:
    """Rebuild ``cls`` from :func:`to_json`'s output; a wrong shape is a ConfigError naming the field path."""
    return typing.cast(T, _decode(cls, data, where or cls.__name__))


def _decode(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _bad(where, "an object", value)
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r}", hint=f"use only {', '.join(sorted(names))}")
        return tp(**{k: _decode(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _bad(where, "a value", value)
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(inner, value, where)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise _bad(where, " or ".join(repr(a) for a in typing.get_args(tp)), value)
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _bad(where, "a list", value)
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{where}.{i}") for i, v in enumerate(value))
        if len(args) != len(value):
            raise _bad(where, f"a list of {len(args)}", value)
        return tuple(_decode(a, v, f"{where}.{i}") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if tp is Path:
        if not isinstance(value, str):
            raise _bad(where, "a path", value)
        return Path(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (str, int, float, bool):
        if type(value) is not tp:
            raise _bad(where, tp.__name__, value)
        return value
    raise TypeError(f"{where}: no JSON decoding for {tp!r}")  # a programming error, not bad input


def _bad(where: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: expected {expected}, got {value!r}", hint="write the config with to_json()")
