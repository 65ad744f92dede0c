"""``--config FILE``: a study's settings in a YAML (or JSON) file, and ``--print-config``.

The file is a mapping with the keys ``--set`` takes, nested or dotted (``solver: {base_iters:
600}`` or ``solver.base_iters: 600``), and ``preset: NAME`` as its base (the default preset
without one); ``--set`` applies after it. A study folder's study.json seeds a new study too:
its ``preset`` mapping (the whole resolved study) is taken as the file. ``--print-config``
writes the resolved study as a file this module reads back to the same study. A bad key or
value is a ConfigError naming the file and the key, as ``--set``'s errors name the flag.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import yaml

from study.overrides import apply_value
from study.spec.study_config import StudyConfig
from trainables.contract.errors import ConfigError, MissingInputError


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2's floats: ``1e-4`` is a number (YAML 1.1, PyYAML's default, reads
    a float without a dot as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


@dataclasses.dataclass(frozen=True)
class ConfigFile:
    """A config file as read: its base preset's name (None: the default) and its settings."""

    path: str
    preset: str | None
    settings: dict[str, Any]


def read_config(path: str) -> ConfigFile:
    """The file's base preset and settings; an unreadable file or one that is no mapping is a
    ConfigError naming it."""
    if not Path(path).is_file():
        raise MissingInputError(f"--config {path}: no such file", "--config")
    try:
        blob = yaml.load(Path(path).read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(
            f"--config {path}: not a YAML or JSON file ({type(err).__name__}: {err})", "--config"
        ) from None
    if not isinstance(blob, dict):
        raise ConfigError(f"--config {path}: expected a mapping of settings, got {type(blob).__name__}", "--config")
    if isinstance(blob.get("preset"), dict):  # a study's study.json: its resolved study
        settings = dict(blob["preset"])
        name = settings.get("name")
        if not isinstance(name, str):
            raise ConfigError(f"--config {path}: preset.name is missing (is this a study.json?)", "--config")
        return ConfigFile(path, name, settings)
    name = blob.pop("preset", None)
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"--config {path}: preset must be a preset's name, got {name!r}", "--config")
    return ConfigFile(path, name, blob)


def apply_config(study: StudyConfig, config: ConfigFile) -> StudyConfig:
    """``study`` (the file's base preset) with every setting of the file applied, in order."""
    for key, value in _leaves(study, config.settings, []):
        where = ".".join(key)
        try:
            study = apply_value(study, key, value)
        except ConfigError as err:
            raise ConfigError(f"--config {config.path}: {err}", where) from None
    return study


def _leaves(obj: Any, mapping: dict[str, Any], prefix: list[str]):
    """(path, value) of each setting: a mapping under a field that holds a dataclass or a
    non-empty mapping is walked into (so that it changes the fields it names, not the whole
    value); anything else sets the field it names."""
    for key, value in mapping.items():
        path = [*prefix, *str(key).split(".")]
        target = _lookup(obj, path)
        walk = dataclasses.is_dataclass(target) or (isinstance(target, dict) and bool(target))
        if isinstance(value, dict) and walk:
            yield from _leaves(obj, value, path)
        else:
            yield path, value


def _lookup(obj: Any, path: list[str]) -> Any:
    for name in path:
        if dataclasses.is_dataclass(obj):
            obj = getattr(obj, name, None)
        elif isinstance(obj, dict):
            obj = obj.get(name)
        else:
            return None
    return obj


def config_text(study: StudyConfig, base: str) -> str:
    """The resolved study (on preset ``base``) as a file ``--config`` reads back to it."""
    plain = json.loads(json.dumps(dataclasses.asdict(study)))
    header = (
        f"# The resolved study {study.name} (at its global batch), as --config reads it back:\n"
        f"#   python study/run.py --config FILE [--set KEY=VALUE ...]\n"
    )
    return header + yaml.safe_dump({"preset": base, **plain}, sort_keys=False, width=100)
