"""Configs to and from plain dicts: what travels through Ray and JSON (``study.json``).

:func:`from_dict` rebuilds a nested frozen dataclass and names an unknown key or a value of
the wrong type in one :class:`ConfigError`; :func:`coerce` turns one value into a field's
type (also for ``--set`` overrides); :func:`to_dict` is the way back.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar

from trainables.contract.trial_config import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Rebuild a (nested) frozen dataclass from ``dataclasses.asdict`` output or user input.

    Unknown keys raise :class:`ConfigError` naming the key, so a typo never passes silently.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown field {where + '.' if where else ''}{unknown[0]} (known: {', '.join(sorted(names))})"
        )
    kwargs = {k: coerce(hints[k], v, f"{where + '.' if where else ''}{k}") for k, v in data.items()}
    return cls(**kwargs)


def coerce(tp: Any, value: Any, where: str) -> Any:
    """``value`` as type ``tp`` (dataclasses from dicts, tuples from lists, int -> float)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return coerce(next(a for a in args if a is not type(None)), value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            value = (value,)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
            return tuple(coerce(args[0], v, where) for v in value)
        if len(value) != len(args):  # tuple[X, Y]: one value per position
            raise ConfigError(f"{where}={value!r} is invalid: expected {len(args)} values")
        return tuple(coerce(a, v, where) for a, v in zip(args, value))
    if origin is Literal:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}={value!r} is invalid: expected {tp.__name__}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists on the way through JSON)."""
    return dataclasses.asdict(config)
