"""Frozen option dataclasses from plain JSON values, checked field by field.

`from_dict(CascadeConfig, {"nbest": 3, "asr": {"window_seconds": 8}}, "options")` builds the
dataclass (nested ones too), and refuses an unknown field with the known ones listed, or a
value of the wrong type with the field's full name: `options.asr.beam_size: expected int, got
'5'`. Lists become tuples; an int is a valid float; a bool is never a number. The dataclass's
own `__post_init__` checks ranges and raises ValueError, which passes through unchanged.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """`cls` (a dataclass) from `data` (a JSON object); ValueError names the field."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where or 'config'}: expected an object, got {_shown(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    for key in data:
        if key not in known:
            raise ValueError(f"{_at(where, key)}: unknown field; known: "
                             f"{', '.join(sorted(known))}")
    values = {key: _value(hints[key], value, _at(where, key)) for key, value in data.items()}
    try:
        return cls(**values)
    except ValueError as exc:  # the dataclass's own range checks: say where
        message = str(exc)
        if not where:
            raise
        first = message.split(" ", 1)[0].rstrip(":")
        raise ValueError(f"{where}.{message}" if first in known else f"{where}: {message}"
                         ) from None


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _value(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            try:
                return _value(option, value, where)
            except ValueError:
                continue
        raise ValueError(f"{where}: expected {_named(hint)}, got {_shown(value)}")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise ValueError(f"{where}: one of {', '.join(map(repr, allowed))}, got "
                             f"{_shown(value)}")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {_shown(value)}")
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if item is None:
            if len(args) != len(value):
                raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_value(a, v, f"{where}[{n}]") for n, (a, v) in enumerate(
                zip(args, value, strict=True)))
        return tuple(_value(item, v, f"{where}[{n}]") for n, v in enumerate(value))
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        return from_dict(hint, value, where)
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {_shown(value)}")
        return float(value)
    if hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ValueError(f"{where}: expected {hint.__name__}, got {_shown(value)}")
        return value
    raise TypeError(f"{where}: cannot read a {hint!r} from JSON")  # a programming error


def _named(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if isinstance(hint, type):
        return {"float": "a number", "tuple": "a list"}.get(hint.__name__, hint.__name__)
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_named(a) for a in typing.get_args(hint))
    if origin is tuple:
        return "a list"
    return str(hint)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
