"""``--set KEY=VALUE``: override any field of a resolved preset, with validation.

Keys are dotted paths into the StudyConfig (``num_workers``, ``solver.base_iters``,
``data.train_images``, ``search.lr``, ``models.r50.norm``, ``seconds_per_iteration.A100``).
Values are JSON where that parses (``4``, ``0.02``, ``[0.01, 0.05]``, ``true``, ``null``) and
plain strings otherwise (paths, URLs). Each override is type-checked against the field and
the dataclasses re-validate themselves, so a bad key or value fails with its name.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from study.spec.study_config import StudyConfig
from trainables.contract.config_io import coerce
from trainables.contract.trial_config import ConfigError


def parse_assignment(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set: '{text}' is not KEY=VALUE")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(study: StudyConfig, assignments: list[str]) -> StudyConfig:
    for text in assignments:
        path, value = parse_assignment(text)
        try:
            study = _set(study, path, value, [])
        except ConfigError as err:
            raise ConfigError(f"--set {text}: {err}") from None
    return study


def apply_value(study: StudyConfig, path: list[str], value: Any) -> StudyConfig:
    """``study`` with the field at ``path`` (``["solver", "base_iters"]``) set to ``value``,
    type-checked and re-validated (``--config``'s settings, study/config_file.py)."""
    return _set(study, path, value, [])


def _set(obj: Any, path: list[str], value: Any, done: list[str]) -> Any:
    name, rest = path[0], path[1:]
    where = ".".join([*done, name])
    if dataclasses.is_dataclass(obj):
        fields = {f.name: f for f in dataclasses.fields(obj)}
        if name not in fields:
            raise ConfigError(f"unknown field '{where}' (known: {', '.join(sorted(fields))})")
        tp = typing.get_type_hints(type(obj))[name]
        current = getattr(obj, name)
        new = _set(current, rest, value, [*done, name]) if rest else coerce(tp, value, where)
        if rest and isinstance(current, dict):
            new = {**current, **new}
        return dataclasses.replace(obj, **{name: new})
    if isinstance(obj, dict):
        if rest:
            if name not in obj:
                raise ConfigError(f"unknown key '{where}' (known: {', '.join(sorted(obj))})")
            return {name: _set(obj[name], rest, value, [*done, name])}
        sample = next(iter(obj.values()), None)
        return {name: coerce(type(sample), value, where) if sample is not None else value}
    raise ConfigError(f"'{'.'.join(done)}' has no field '{name}'")
