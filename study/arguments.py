"""What the command line's arguments name: the study folder, the preset with its overrides,
and ``--trial``'s values, each validated (bad input raises ConfigError naming the part)."""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any

from study.config_file import ConfigFile, apply_config, read_config
from study.guards import preflight
from study.hpo import optuna_db
from study.overrides import apply_overrides
from study.spec.presets import get_preset
from study.spec.resolved import ResolvedStudy, arm_spec, resolve
from study.spec.study_config import Arm, Axes, StudyConfig, at_global_batch, in_epochs
from study.workspace import check_folder, study_uri
from trainables.contract.config_io import from_dict
from trainables.contract.study_record import read_record
from trainables.contract.trial_config import INITS, ConfigError, TrialConfig
from trainables.data.census import DataCounts

TRIAL_KEYS = ("init", "model", "data_fraction", "lr", "weight_decay", "schedule", "seed")
DEFAULT_PRESET = "toy"


def parse_trial(text: str, study: StudyConfig) -> dict[str, Any]:
    """``init=scratch,lr=0.02,...`` -> validated values; the arm's recipe fills the rest."""
    values: dict[str, Any] = {
        "init": study.axes.init[0],
        "model": study.axes.model[0],
        "data_fraction": study.axes.data_fraction[0],
        "seed": study.seed,
    }
    given: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not raw:
            raise ConfigError(f"--trial: '{part}' is not KEY=VALUE")
        if key not in TRIAL_KEYS:
            raise ConfigError(f"--trial: unknown key '{key}' (known: {', '.join(TRIAL_KEYS)})")
        given[key] = _parse_value(key, raw, study)
    values.update(given)
    recipe = arm_spec(study, Arm(values["init"], values["data_fraction"], values["model"])).recipe
    return {**values, **recipe, **given}


def _parse_value(key: str, raw: str, study: StudyConfig) -> Any:
    if key == "init":
        if raw not in INITS:
            raise ConfigError(f"--trial: init='{raw}' must be one of {', '.join(INITS)}")
        return raw
    if key == "model":
        if raw not in study.models:
            raise ConfigError(
                f"--trial: model='{raw}' is not a model of preset {study.name} ({', '.join(study.models)})"
            )
        return raw
    if key == "seed":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"--trial: seed='{raw}' is not an integer") from None
    try:
        number = float(raw)
    except ValueError:
        raise ConfigError(f"--trial: {key}='{raw}' is not a number") from None
    rules = {
        "data_fraction": ("in (0, 1]", 0 < number <= 1),
        "lr": ("> 0", number > 0),
        "weight_decay": (">= 0", number >= 0),
        "schedule": ("> 0", number > 0),
    }
    rule, ok = rules[key]
    if not (ok and math.isfinite(number)):
        raise ConfigError(f"--trial: {key}={raw} must be {rule}")
    return number


def folder_of(args: argparse.Namespace) -> str:
    """The study folder DIR/NAME the arguments name."""
    if args.name is not None:
        preflight.check_name(args.name)
    preflight.check_results(args.results)
    return study_uri(args.results, args.name or base_preset(args))


def config_of(args: argparse.Namespace) -> ConfigFile | None:
    """The --config file, read once: the folder, the study and study.json's record of it all
    come from the same reading, even if the file changes meanwhile."""
    if isinstance(getattr(args, "config", None), str):
        args.config = read_config(args.config)
    return getattr(args, "config", None)


def base_preset(args: argparse.Namespace) -> str:
    """The preset a new study starts from: --preset, else the --config file's, else the default."""
    config = config_of(args)
    if config is not None and args.preset and config.preset and config.preset != args.preset:
        raise ConfigError(
            f"--preset {args.preset} and --config {config.path} (preset: {config.preset}) name two presets; "
            "drop one of them"
        )
    return args.preset or (config.preset if config is not None else None) or DEFAULT_PRESET


def resolve_args(args: argparse.Namespace) -> tuple[ResolvedStudy, str, dict[str, Any] | None]:
    """The resolved study, the study folder and the --trial values, all validated.

    A ``--trial`` study has one arm, the trial's. ``--resume`` takes everything from the
    folder's study.json: the preset, the --set overrides and trials per arm it was started
    with, and whether it was one --trial.
    """
    uri = folder_of(args)
    if args.resume:
        study, values = _resume_study(args, uri)
    else:
        study, values = _new_study(args)
        if not args.dry_run:
            check_folder(uri, resume=False)
    if values is not None:
        a = study.axes
        one = (
            values.get("init", a.init[0]),
            values.get("data_fraction", a.data_fraction[0]),
            values.get("model", a.model[0]),
        )
        study = dataclasses.replace(study, axes=Axes((one[0],), (one[1],), (one[2],)))
    return resolve(study), uri, values


def with_counts(resolved: ResolvedStudy, counts: DataCounts | None, resumed: str | None = None) -> ResolvedStudy:
    """The study with 1x derived from the counted training images where the preset states it
    in epochs (``solver.epochs_per_1x``). ``resumed``: the folder of a study being resumed,
    whose 1x must still come out as it did when it started."""
    study = resolved.study
    if not study.solver.epochs_per_1x:
        return resolved
    if counts is not None:
        images = counts.trainable_images
    elif study.data.source == "synthetic":
        images = study.data.generated_training_images
    else:
        images = None
    derived = in_epochs(study, images)
    if resumed is not None:
        started = read_record(resumed).preset.get("solver", {}).get("base_iters")
        if started is not None and started != derived.solver.base_iters:
            raise ConfigError(
                f"--resume: 1x is now {derived.solver.base_iters:,} iterations "
                f"(solver.epochs_per_1x={study.solver.epochs_per_1x:g} of {images:,} training images), but the study "
                f"started with {started:,}: the training files changed since; restore them, or start a new study",
                "solver.epochs_per_1x",
            )
    return resolve(derived)


def overrides_of(args: argparse.Namespace) -> list[str]:
    """--set's overrides, then the flags that are shorthands for one (--optuna-storage)."""
    storage = getattr(args, "optuna_storage", None)
    return [*args.set, *([f"optuna_storage={storage}"] if storage else [])]


def _new_study(args: argparse.Namespace) -> tuple[StudyConfig, dict[str, Any] | None]:
    study = get_preset(base_preset(args))
    if config_of(args) is not None:
        study = apply_config(study, config_of(args))
    if args.num_samples:
        study = dataclasses.replace(study, num_samples=args.num_samples)
    if args.replicates:
        if args.trial is not None:
            raise ConfigError("--replicates belongs to a study's search; --trial runs one trial (set its seed instead)")
        study = dataclasses.replace(study, replicates=args.replicates)
    study = at_global_batch(apply_overrides(study, overrides_of(args)))
    return study, parse_trial(args.trial, study) if args.trial is not None else None


def _resume_study(args: argparse.Namespace, uri: str) -> tuple[StudyConfig, dict[str, Any] | None]:
    if overrides_of(args) or args.num_samples or getattr(args, "config", None):
        raise ConfigError(
            "--set, --config, --optuna-storage and --num-samples cannot change a study on --resume "
            "(its configuration is in study.json)"
        )
    check_folder(uri, resume=True)
    stored = read_record(uri)
    optuna_db.check(uri, stored.preset.get("optuna_storage", ""))
    name = (stored.config or {}).get("preset") or (DEFAULT_PRESET if stored.config else stored.name)
    if args.preset and args.preset != name:
        raise ConfigError(f"--resume: {uri} holds a study of preset {name}, not {args.preset}")
    for arm, config in stored.arms.items():
        # What the trials will rebuild: a study started by an older version of the code
        # (e.g. before the search and test splits, when data had val_* paths) fails here,
        # before Ray, instead of in every trial.
        try:
            from_dict(TrialConfig, config)
        except ConfigError as err:
            raise ConfigError(
                f"--resume: arm {arm} in {uri}/study.json does not build with this version of the code ({err}); "
                f"resume it with the version that started it (study.json's code_version), or start a new study",
                err.field,
            ) from None
    study = get_preset(name)
    if stored.config:  # the --config file's settings as read when the study started
        study = apply_config(study, ConfigFile(**stored.config))
    study = at_global_batch(apply_overrides(study, stored.overrides))
    study = dataclasses.replace(
        study,
        num_samples=stored.num_samples or study.num_samples,
        # More replicates may be asked for on --resume: they only add trials after the search.
        replicates=args.replicates or stored.replicates or study.replicates,
    )
    return study, stored.trial if stored.mode == "trial" else None
