"""Command line of ``python study/run.py``: parse, validate, then hand over to Ray.

Bad input (an unknown preset, trial key or value, an existing study folder) exits with
status 2 and a message that names the bad part, before Ray starts or anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from typing import Any

from study.config import Arm, Axes, StudyConfig, base_trial
from study.presets import PRESETS, get_preset
from study.workspace import StudyExists, check_folder, code_version, prepare_inputs, study_uri, write_study_file
from trainables.config import INITS, ConfigError

TRIAL_KEYS = ("init", "model", "data_fraction", "lr", "weight_decay", "schedule", "seed")


def build_parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {name:<12} {p.description}" for name, p in PRESETS.items())
    parser = argparse.ArgumentParser(
        prog="python study/run.py",
        description="Scratch vs. ImageNet-pretrained Mask R-CNN: a Ray Tune + Ray Train + Optuna study.",
        epilog=f"presets:\n{presets}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="toy", help="study preset (default: toy; see the list below)")
    parser.add_argument("--trial", metavar="KEY=VALUE,...",
                        help=f"run exactly one trial with these values instead of a search; keys: {', '.join(TRIAL_KEYS)}")
    parser.add_argument("--results", default="results", help="results folder or s3:// URI (default: results/)")
    parser.add_argument("--name", help="study name, the folder under --results (default: the preset's name)")
    parser.add_argument("--resume", action="store_true", help="continue the study in an existing folder")
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a new local Ray)")
    return parser


def parse_trial(text: str, study: StudyConfig) -> dict[str, Any]:
    """``init=scratch,lr=0.02,...`` -> validated values; the preset's defaults fill the rest."""
    values: dict[str, Any] = {"init": study.axes.init[0], "model": study.axes.model[0],
                              "data_fraction": study.axes.data_fraction[0], "seed": study.seed, **study.default_trial}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not raw:
            raise ConfigError(f"--trial: '{part}' is not KEY=VALUE")
        if key not in TRIAL_KEYS:
            raise ConfigError(f"--trial: unknown key '{key}' (known: {', '.join(TRIAL_KEYS)})")
        values[key] = _parse_value(key, raw, study)
    return values


def _parse_value(key: str, raw: str, study: StudyConfig) -> Any:
    if key == "init":
        if raw not in INITS:
            raise ConfigError(f"--trial: init='{raw}' must be one of {', '.join(INITS)}")
        return raw
    if key == "model":
        if raw not in study.models:
            raise ConfigError(f"--trial: model='{raw}' is not a model of preset {study.name} "
                              f"({', '.join(study.models)})")
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
    rules = {"data_fraction": ("in (0, 1]", 0 < number <= 1), "lr": ("> 0", number > 0),
             "weight_decay": (">= 0", number >= 0), "schedule": ("> 0", number > 0)}
    rule, ok = rules[key]
    if not (ok and math.isfinite(number)):
        raise ConfigError(f"--trial: {key}={raw} must be {rule}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        study = get_preset(args.preset)
        values = parse_trial(args.trial, study) if args.trial is not None else None
        if values is None:
            parser.error("a search over arms is not available yet; pass --trial KEY=VALUE,...")
        uri = study_uri(args.results, args.name or study.name)
        check_folder(uri, args.resume)
    except (KeyError, ConfigError, StudyExists) as err:
        parser.error(str(err.args[0] if isinstance(err, KeyError) else err))
    return run_trial_command(study, values, uri, args)


def run_trial_command(study: StudyConfig, values: dict[str, Any], uri: str, args: argparse.Namespace) -> int:
    from study import tuning  # Ray is imported only once the input is known to be good

    arm = Arm(values["init"], values["data_fraction"], values["model"])
    version = code_version()
    print(f"study {study.name}: one trial, arm {arm.name}, lr {values['lr']:g}, weight decay "
          f"{values['weight_decay']:g}, schedule {values['schedule']:g}x -> {uri}", flush=True)
    pretrained = prepare_inputs(dataclasses.replace(study, axes=Axes((arm.init,), (arm.data_fraction,), (arm.model,))))
    try:
        arms = {arm.name: base_trial(study, arm, results_uri=uri, code_version=version, pretrained=pretrained)}
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.resume:
        write_study_file(uri, study, arms, {"mode": "trial", "trial": values, "code_version": version})
    tuning.start_ray(args.address, num_cpus=max(os.cpu_count() or 1, study.num_workers * study.cpus_per_worker))
    param_space = {"arm": arm.name, **{k: values[k] for k in ("lr", "weight_decay", "schedule", "seed")}}
    grid = tuning.run_single_trial(arms, param_space, uri, study.objective, args.resume)
    result = grid[0]
    if result.error:
        print(f"trial failed: {result.error}", file=sys.stderr)
        return 1
    m = result.metrics or {}
    print(f"\ntrial {m.get('trial_id')} {m.get('status')}: bbox AP {m.get('bbox_AP', float('nan')):.3f}, "
          f"segm AP {m.get('segm_AP', float('nan')):.3f} after {m.get('iteration')} iterations")
    print(f"results: {uri}/metrics (pandas.read_parquet), config: {uri}/study.json")
    return 0
