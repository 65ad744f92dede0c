"""Command line of ``python study/run.py``: parse, validate, then hand over to Ray.

Bad input (an unknown preset, trial key or value, a bad ``--num-samples``, an existing
study folder) exits with status 2 and a message that names the bad part, before Ray starts
or anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from typing import Any

from study import failures, preflight
from study.config import Arm, Axes, StudyConfig, at_global_batch, base_trial, default_point, search_space
from study.config import arms as study_arms
from study.overrides import apply_overrides
from study.plan import format_plan, make_plan
from study.presets import PRESETS, get_preset
from study.workspace import (
    StudyExists,
    check_folder,
    code_version,
    prepare_inputs,
    read_study_file,
    seed_backbones,
    study_uri,
    write_study_file,
)
from trainables.branches import branches
from trainables.config import INITS, ConfigError, TrialConfig, from_dict
from trainables.errors import InputError
from trainables.storage import is_uri

TRIAL_KEYS = ("init", "model", "data_fraction", "lr", "weight_decay", "schedule", "seed")
DEFAULT_PRESET = "toy"


def build_parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {name:<20} {p.description}" for name, p in PRESETS.items())
    parser = argparse.ArgumentParser(
        prog="python study/run.py",
        description="Scratch vs. ImageNet-pretrained Mask R-CNN: a Ray Tune + Ray Train + Optuna study. "
        "Without --trial it runs one Optuna search per arm (init x data fraction x model).",
        epilog=f"presets:\n{presets}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", help=f"study preset (default: {DEFAULT_PRESET}, or the resumed study's)")
    parser.add_argument(
        "--trial",
        metavar="KEY=VALUE,...",
        help=f"run exactly one trial with these values instead of a search; keys: {', '.join(TRIAL_KEYS)}",
    )
    parser.add_argument("--results", default="results", help="results folder or s3:// URI (default: results/)")
    parser.add_argument("--name", help="study name, the folder under --results (default: the preset's name)")
    parser.add_argument("--num-samples", type=_positive_int, metavar="N", help="trials per arm (default: the preset's)")
    parser.add_argument(
        "--replicates",
        type=_positive_int,
        metavar="K",
        help="after the search, score each arm's recipe and best (lr, weight decay) under K seeds for the "
        "report's seed noise and intervals (default: the preset's; 1 = none; may be raised on --resume)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the study in an existing folder")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit without training")
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a new local Ray)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the preset, e.g. --set num_workers=4 --set data.train_images=/d/x "
        "--set search.lr=[0.01,0.05] (repeatable)",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
    return {**values, **default_point(study, values), **given}


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


def resolve(args: argparse.Namespace) -> tuple[StudyConfig, str, dict[str, Any] | None]:
    """The preset, the study folder and the --trial values, all validated.

    ``--resume`` takes everything from the folder's study.json: the preset, the --set
    overrides and trials per arm it was started with, and whether it was one --trial.
    """
    if args.name is not None:
        preflight.check_name(args.name)
    preflight.check_results(args.results)
    uri = study_uri(args.results, args.name or args.preset or DEFAULT_PRESET)
    if args.resume:
        return _resolve_resume(args, uri)
    study = get_preset(args.preset or DEFAULT_PRESET)
    if args.num_samples:
        study = dataclasses.replace(study, num_samples=args.num_samples)
    if args.replicates:
        if args.trial is not None:
            raise ConfigError("--replicates belongs to a study's search; --trial runs one trial (set its seed instead)")
        study = dataclasses.replace(study, replicates=args.replicates)
    study = at_global_batch(apply_overrides(study, args.set))
    values = parse_trial(args.trial, study) if args.trial is not None else None
    if not args.dry_run:
        check_folder(uri, resume=False)
    return study, uri, values


def _resolve_resume(args: argparse.Namespace, uri: str) -> tuple[StudyConfig, str, dict[str, Any] | None]:
    if args.set or args.num_samples:
        raise ConfigError(
            "--set and --num-samples cannot change a study on --resume (its configuration is in study.json)"
        )
    check_folder(uri, resume=True)
    stored = read_study_file(uri)
    name = stored["preset"]["name"]
    if args.preset and args.preset != name:
        raise ConfigError(f"--resume: {uri} holds a study of preset {name}, not {args.preset}")
    for arm, config in (stored.get("arms") or {}).items():
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
    study = at_global_batch(apply_overrides(get_preset(name), stored.get("overrides", [])))
    study = dataclasses.replace(
        study,
        num_samples=stored.get("num_samples", study.num_samples),
        # More replicates may be asked for on --resume: they only add trials after the search.
        replicates=args.replicates or stored.get("replicates", study.replicates),
    )
    values = stored.get("trial") if stored.get("mode") == "trial" else None
    return study, uri, values


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        study, uri, values = resolve(args)
        check_before_ray(study, values, args)
    except (KeyError, InputError, StudyExists) as err:
        # One line, before Ray starts or anything is written (argparse's own errors add usage).
        parser.exit(2, f"{parser.prog}: error: {err.args[0] if isinstance(err, KeyError) else err}\n")
    if args.dry_run:
        return dry_run(study, values)
    if values is not None:
        return run_trial_command(study, values, uri, args)
    return run_study_command(study, uri, args)


def check_before_ray(study: StudyConfig, values: dict[str, Any] | None, args: argparse.Namespace) -> None:
    """Every value, path and address the driver can check (study/preflight.py)."""
    if values is not None:
        study = _one_arm(study, values)
        arm = Arm(values["init"], values["data_fraction"], values["model"])
        try:
            branches(study.solver.base_iters, search_space(study, arm).schedule, values["schedule"])
        except ValueError as err:
            raise ConfigError(f"--trial: {err}", "schedule") from None
    preflight.check_study(study)
    if not args.dry_run:
        preflight.check_address(args.address)
    address = args.address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        missing_ok = "the trials check it on the cluster's nodes"
    elif args.dry_run:
        missing_ok = "a run here would stop on it (on a cluster, with --address, the trials check it)"
    else:
        missing_ok = None
    preflight.check_inputs(study, missing_ok)


def dry_run(study: StudyConfig, values: dict[str, Any] | None) -> int:
    cores = os.cpu_count() or 1
    if values is not None:
        study = _one_arm(study, values)
        study = dataclasses.replace(study, num_samples=1)
    if study.max_concurrent_trials:
        capacity = "max_concurrent_trials"
    elif study.use_gpu and study.cluster_gpus:
        capacity = f"the cluster's {study.cluster_gpus} GPUs (cluster_gpus) / {study.num_workers} per trial"
    elif study.use_gpu:
        capacity = f"GPUs of the cluster / {study.num_workers} per trial; set --set cluster_gpus=N to plan for N"
    else:
        capacity = f"{cores} CPUs here / {study.num_workers * study.cpus_per_worker} per trial"
    print(format_plan(make_plan(study, study.num_samples, cores, 0, capacity)))
    print("\n(dry run: nothing was trained or written)")
    return 0


def _one_arm(study: StudyConfig, values: dict[str, Any]) -> StudyConfig:
    return dataclasses.replace(study, axes=Axes((values["init"],), (values["data_fraction"],), (values["model"],)))


def _prepare(study: StudyConfig, uri: str, args: argparse.Namespace, mode: dict[str, Any]) -> dict[str, Any] | None:
    """Arms, study.json and a running Ray; None (after printing why) for a bad arm config."""
    from study import tuning

    try:
        arms = _arms(study, uri, args.resume)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    if not args.resume:
        write_study_file(uri, study, arms, mode)
    tuning.start_ray(args.address, num_cpus=_local_cpus(study))
    return arms


def _arms(study: StudyConfig, uri: str, resume: bool) -> dict[str, dict[str, Any]]:
    """Each arm's fixed trial config: from study.json when resuming, else freshly resolved."""
    if resume:
        return read_study_file(uri)["arms"]
    version = code_version()
    pretrained = prepare_inputs(study)
    return {
        arm.name: base_trial(study, arm, results_uri=uri, code_version=version, pretrained=pretrained)
        for arm in study_arms(study)
    }


def run_trial_command(study: StudyConfig, values: dict[str, Any], uri: str, args: argparse.Namespace) -> int:
    from study import tuning  # Ray is imported only once the input is known to be good

    study = _one_arm(study, values)
    arm = Arm(values["init"], values["data_fraction"], values["model"])
    print(
        f"study {study.name}: one trial, arm {arm.name}, lr {values['lr']:g}, weight decay "
        f"{values['weight_decay']:g}, schedule {values['schedule']:g}x -> {uri}",
        flush=True,
    )
    arms = _prepare(study, uri, args, {"mode": "trial", "trial": values, "overrides": args.set})
    if arms is None:
        return 2
    param_space = {"arm": arm.name, **{k: values[k] for k in ("lr", "weight_decay", "schedule", "seed")}}
    grid = tuning.run_single_trial(arms, param_space, uri, study.objective, args.resume)
    failed = tuning.failed_trials(grid, uri)
    if failed:
        print(f"\n{failures.format_failures(failed)}", file=sys.stderr)
        return 1
    result = grid[0]
    m = result.metrics or {}
    print(
        f"\ntrial {m.get('trial_id')} {m.get('status')}: bbox AP {m.get('bbox_AP', float('nan')):.3f}, "
        f"segm AP {m.get('segm_AP', float('nan')):.3f} after {m.get('iteration')} iterations"
    )
    print(f"results: {uri}/metrics (pandas.read_parquet), config: {uri}/study.json")
    return 0


def run_study_command(study: StudyConfig, uri: str, args: argparse.Namespace) -> int:
    import ray

    from analysis import load_results
    from analysis.report import write_report
    from study import tuning
    from study.plan import max_concurrent_trials
    from study.summary import best_per_arm, format_summary

    mode = {"mode": "search", "num_samples": study.num_samples, "replicates": study.replicates, "overrides": args.set}
    arms = _prepare(study, uri, args, mode)
    if arms is None:
        return 2
    cluster = ray.cluster_resources()
    concurrent = max_concurrent_trials(study, cluster.get("CPU", 0), cluster.get("GPU", 0))
    plan = make_plan(
        study,
        study.num_samples,
        cluster.get("CPU", 0),
        cluster.get("GPU", 0),
        f"cluster: {cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs",
    )
    print(format_plan(plan), flush=True)
    print(f"\n{'resuming' if args.resume else 'starting'} study in {uri}\n", flush=True)
    grids = [tuning.run_study(study, arms, study.num_samples, uri, concurrent, args.resume)]
    if study.replicates > 1:
        print(f"\nsearch done; replicate phase ({study.replicates} seeds)", flush=True)
        from study.replicates import seeds

        backbones = seed_backbones(study, arms, seeds(study))
        grids += tuning.run_replicates(study, arms, uri, concurrent, backbones=backbones)
    try:
        df = load_results(uri)
    except FileNotFoundError:
        df = None
        print("\nno trial wrote an evaluation row", file=sys.stderr)
    if df is not None:
        print("\nbest schedule result per arm (chosen on the search split; final evaluations after each cooldown):")
        print(format_summary(best_per_arm(df[df["seed"] == study.seed], study.objective)))
    if df is not None and not is_uri(uri):
        report = write_report(uri)
        print(f"\nreport:  {report} (figures beside it; python -m analysis.report {uri})")
    print(f"results: {uri}/metrics  (analysis.load_results('{uri}') or pandas.read_parquet)")
    print(f"optuna:  optuna-dashboard sqlite:///{tuning.local_optuna_db(uri)}")
    print(f"tune:    {uri}/tune  (tensorboard --logdir {uri}/tune)")
    failed = [f for grid in grids for f in tuning.failed_trials(grid, uri)]
    if failed:
        print(
            f"\n{failures.format_failures(failed)}\n(their rows say 'failed'; fix the input and run the same "
            f"command with --resume to continue)",
            file=sys.stderr,
        )
        return 1
    return 0


def _local_cpus(study: StudyConfig) -> int:
    return max(os.cpu_count() or 1, study.num_workers * study.cpus_per_worker)
