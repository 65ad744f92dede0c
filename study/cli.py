"""Command line of ``python study/run.py``: parse, validate, then hand over to Ray.

Bad input (an unknown preset, trial key or value, a bad ``--num-samples``, an existing
study folder) exits with status 2 and a message that names the bad part, before Ray starts
or anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from study.arguments import base_preset, config_of, folder_of, overrides_of, resolve_args, with_counts
from study.config_file import config_text
from study.flags import build_parser
from study.guards import disk, preflight
from study.guards.driver_lock import DriverLock, StudyLocked, takeover_line
from study.guards.interrupts import Interrupted, Interrupts, resume_line
from study.hpo import failures, optuna_db, trackers
from study.plan.estimate import make_plan
from study.plan.text import format_plan
from study.spec.resolved import ResolvedStudy
from study.spec.study_config import StudyConfig
from study.workspace import (
    StudyExists,
    check_folder,
    code_version,
    generated_counts,
    prepare_inputs,
    seed_backbones,
    write_study_file,
)
from trainables.contract.errors import InputError
from trainables.contract.storage import is_uri
from trainables.contract.study_record import has_record, read_record
from trainables.contract.trial_config import ConfigError
from trainables.data.census import DataCounts


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.print_config and args.resume:
        parser.error(
            "--print-config prints a new study; for a started one, --config DIR/NAME/study.json --print-config"
        )
    lock = None
    try:
        if not (args.dry_run or args.print_config):
            # A second driver on an existing study folder stops here, before anything is
            # read; a new folder is created (with its lock) only once the input is good.
            lock = DriverLock(folder_of(args))
            if lock.folder_exists():
                lock.acquire()
        resolved, uri, values = resolve_args(args)
        if args.print_config:
            print(config_text(resolved.study, base_preset(args)), end="")
            return 0
        resolved, counts = check_before_ray(resolved, values, args, uri)
        if lock is not None and not lock.held:
            lock.acquire()
            check_folder(uri, args.resume)  # another driver may have started it meanwhile
    except (KeyError, InputError, StudyExists, StudyLocked) as err:
        # One line, before Ray starts or anything is written (argparse's own errors add usage).
        if lock is not None:
            lock.release()
        parser.exit(2, f"{parser.prog}: error: {err.args[0] if isinstance(err, KeyError) else err}\n")
    if args.dry_run:
        return dry_run(resolved, values, uri, counts)
    interrupts = Interrupts()
    interrupts.install()
    try:
        if takeover_line(lock):
            print(takeover_line(lock), file=sys.stderr, flush=True)
        if values is not None:
            return run_trial_command(resolved, values, uri, args, interrupts)
        return run_study_command(resolved, uri, args, interrupts, counts)
    except Exception as err:
        if disk.is_out_of_space(err):
            _stop_ray()
            print(f"\n{disk.out_of_space_line(uri, err)}", file=sys.stderr)
            return 1
        if isinstance(err, OSError) and not is_uri(uri) and not os.path.isdir(uri):
            print(f"\nthe study folder {uri} is gone ({err}); the study stopped", file=sys.stderr)
            return 1
        raise
    except Interrupted as stop:
        _stop_ray()
        started = has_record(uri)
        print(
            f"\n{resume_line(uri, stop.signum)}"
            if started
            else f"\ninterrupted by {stop}: nothing was written; run the same command again",
            file=sys.stderr,
        )
        return interrupts.exit_status
    finally:
        interrupts.uninstall()
        lock.release()


def _stop_ray() -> None:
    """Ends Ray's streaming of the workers' logs, so that the driver's own lines come last."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def check_before_ray(
    resolved: ResolvedStudy, values: dict[str, Any] | None, args: argparse.Namespace, uri: str
) -> tuple[ResolvedStudy, DataCounts | None]:
    """Every value, path and address the driver can check (study/guards/preflight.py); returns
    the study with what is derived from the counted files (1x from solver.epochs_per_1x) and
    the training file's counts where preflight read it."""
    study = resolved.study
    if not args.dry_run:
        preflight.check_address(args.address)
        if study.optuna_storage and not args.resume:  # a resumed study's was checked with its study.json
            optuna_db.check("", study.optuna_storage)
        trackers.check(tuple(args.tracker))
    address = args.address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        missing_ok = "the trials check it on the cluster's nodes"
    elif args.dry_run:
        missing_ok = "a run here would stop on it (on a cluster, with --address, the trials check it)"
    else:
        missing_ok = None
    counts = preflight.check_inputs(study, missing_ok)
    resolved = with_counts(resolved, counts, uri if args.resume else None)
    if values is not None:  # a --trial study has the trial's arm alone
        try:
            resolved.arms[0].branches_of(values["schedule"])
        except ValueError as err:
            raise ConfigError(f"--trial: {err}", "schedule") from None
    preflight.check_study(resolved)
    return resolved, counts


def dry_run(resolved: ResolvedStudy, values: dict[str, Any] | None, uri: str, counts: DataCounts | None = None) -> int:
    cores = os.cpu_count() or 1
    if values is not None:
        resolved = dataclasses.replace(resolved, study=dataclasses.replace(resolved.study, num_samples=1))
    study = resolved.study
    if study.max_concurrent_trials:
        capacity = "max_concurrent_trials"
    elif study.use_gpu and study.cluster_gpus:
        capacity = f"the cluster's {study.cluster_gpus} GPUs (cluster_gpus) / {study.num_workers} per trial"
    elif study.use_gpu:
        capacity = f"GPUs of the cluster / {study.num_workers} per trial; set --set cluster_gpus=N to plan for N"
    else:
        capacity = f"{cores} CPUs here / {study.num_workers * study.cpus_per_worker} per trial"
    plan = make_plan(resolved, study.num_samples, cores, 0, capacity, counts)
    print(format_plan(plan))
    print(disk.plan_line(_disk_need(study, plan), uri))
    print("\n(dry run: nothing was trained or written)")
    return 0


def _prepare(
    resolved: ResolvedStudy, uri: str, args: argparse.Namespace, mode: dict[str, Any]
) -> dict[str, Any] | None:
    """Arms, study.json and a running Ray; None (after printing why) for a bad arm config."""
    from study.hpo import tuning

    try:
        arms = _arms(resolved, uri, args.resume)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    if not args.resume:
        write_study_file(uri, resolved, arms, mode)
    tuning.start_ray(args.address, num_cpus=_local_cpus(resolved.study))
    return arms


def _arms(resolved: ResolvedStudy, uri: str, resume: bool) -> dict[str, dict[str, Any]]:
    """Each arm's fixed trial config: from study.json when resuming, else freshly resolved."""
    if resume:
        return read_record(uri).arms
    pretrained = prepare_inputs(resolved.study)
    return resolved.trial_configs(results_uri=uri, code_version=code_version(), pretrained=pretrained)


def run_trial_command(
    resolved: ResolvedStudy, values: dict[str, Any], uri: str, args: argparse.Namespace, interrupts: Interrupts
) -> int:
    from study.hpo import tuning  # Ray is imported only once the input is known to be good

    study, arm = resolved.study, resolved.arms[0].arm
    print(
        f"study {study.name}: one trial, arm {arm.name}, lr {values['lr']:g}, weight decay "
        f"{values['weight_decay']:g}, schedule {values['schedule']:g}x -> {uri}",
        flush=True,
    )
    arms = _prepare(resolved, uri, args, {"mode": "trial", "trial": values, **_settings(args)})
    if arms is None:
        return 2
    interrupts.install()  # over the SIGTERM handler that ray.init put in place
    param_space = {"arm": arm.name, **{k: values[k] for k in ("lr", "weight_decay", "schedule", "seed")}}
    need = _disk_need(study, make_plan(resolved, 1, 0, 0, "one trial"))
    with _watch(uri, need, 1) as watch, interrupts.tune_running():
        grid = tuning.run_single_trial(
            arms, param_space, uri, study.objective, args.resume, tuple(dict.fromkeys(args.tracker))
        )
    if watch.short is not None:
        _stop_ray()
        print(f"\n{disk.out_of_space_line(uri, reserve=watch.reserve)}", file=sys.stderr)
        return 1
    failed = tuning.failed_trials(grid, uri)
    if failed:
        print(f"\n{failures.format_failures(failed)}\n({_advice(failed, uri)})", file=sys.stderr)
        return 1
    result = grid[0]
    m = result.metrics or {}
    scores = ", ".join(
        f"{k.replace('_AP', ' AP')} {m.get(k, float('nan')):.3f}"
        for k in dict.fromkeys(("bbox_AP", "segm_AP", study.objective))
    )
    print(f"\ntrial {m.get('trial_id')} {m.get('status')}: {scores} after {m.get('iteration')} iterations")
    print(f"results: {uri}/metrics (pandas.read_parquet), config: {uri}/study.json")
    return 0


def run_study_command(
    resolved: ResolvedStudy,
    uri: str,
    args: argparse.Namespace,
    interrupts: Interrupts,
    counts: DataCounts | None = None,
) -> int:
    """The search, then the replicate phase, then the summary and the report."""
    from study.hpo import tuning  # Ray is imported only once the input is known to be good

    study = resolved.study
    mode = {"mode": "search", "num_samples": study.num_samples, "replicates": study.replicates, **_settings(args)}
    arms = _prepare(resolved, uri, args, mode)
    if arms is None:
        return 2
    interrupts.install()  # over the SIGTERM handler that ray.init put in place
    plan, concurrent = _cluster_plan(resolved, counts)
    need = _disk_need(study, plan)
    print(format_plan(plan), disk.plan_line(need, uri), sep="\n", flush=True)
    print(f"\n{'resuming' if args.resume else 'starting'} study in {uri}\n", flush=True)
    tracking = tuple(dict.fromkeys(args.tracker))
    grids, short = _run_phases(
        resolved, arms, uri, args.resume, interrupts, need, concurrent, plan.expected_iterations, tracking
    )
    if short is not None:
        _stop_ray()
        print(f"\n{disk.out_of_space_line(uri, reserve=short)}", file=sys.stderr)
        return 1
    _print_outcome(study, uri)
    failed = [f for grid in grids for f in tuning.failed_trials(grid, uri)]
    if failed:
        print(
            f"\n{failures.format_failures(failed)}\n(their rows say 'failed'; {_advice(failed, uri)})", file=sys.stderr
        )
        return 1
    return 0


def _cluster_plan(resolved: ResolvedStudy, counts: DataCounts | None):
    """The plan for the cluster Ray sees now, and how many trials run at once on it."""
    import ray

    from study.plan.estimate import max_concurrent_trials

    study = resolved.study
    cluster = ray.cluster_resources()
    cpus, gpus = cluster.get("CPU", 0), cluster.get("GPU", 0)
    plan = make_plan(
        resolved,
        study.num_samples,
        cpus,
        gpus,
        f"cluster: {cpus:g} CPUs, {gpus:g} GPUs",
        counts or generated_counts(study),
    )
    return plan, max_concurrent_trials(study, cpus, gpus)


def _run_phases(
    resolved: ResolvedStudy,
    arms: dict[str, dict[str, Any]],
    uri: str,
    resume: bool,
    interrupts: Interrupts,
    need: disk.DiskNeed,
    concurrent: int,
    planned: int = 0,
    tracking: tuple[str, ...] = (),
) -> tuple[list, float | None]:
    """The search and, with replicates, the replicate phase; returns their result grids and,
    where the disk ran short, the reserve it fell under (else None)."""
    from study.hpo import tuning
    from study.hpo.replicate_phase import all_seeds

    study = resolved.study
    with _watch(uri, need, concurrent) as watch, interrupts.tune_running():
        grids = [tuning.run_study(resolved, arms, study.num_samples, uri, concurrent, resume, planned, tracking)]
    if watch.short is None and study.replicates > 1:
        print(f"\nsearch done; replicate phase ({study.replicates} seeds)", flush=True)
        backbones = seed_backbones(study, arms, all_seeds(study))
        with _watch(uri, need, concurrent) as watch, interrupts.tune_running():
            grids += tuning.run_replicates(resolved, arms, uri, concurrent, backbones=backbones, trackers=tracking)
    return grids, (watch.reserve if watch.short is not None else None)


def _print_outcome(study: StudyConfig, uri: str) -> None:
    """The best result per arm, the report, and where everything is."""
    from analysis import load_results
    from analysis.report import write_report
    from study.summary import best_per_arm, format_summary

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
    print(f"optuna:  {optuna_db.dashboard_command(uri, study.optuna_storage)}")
    print(f"curves:  tensorboard --logdir {uri}/tensorboard  (Tune's own files: {uri}/tune)")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """What study.json records of the settings given: --config's file as read, and --set's."""
    config = config_of(args)
    return {"overrides": overrides_of(args), "config": dataclasses.asdict(config) if config is not None else None}


def _advice(failed: list[failures.Failure], uri: str) -> str:
    """What to do about the failed trials: make room, or fix their input; then --resume."""
    if any(disk.is_out_of_space(RuntimeError(f.message)) for f in failed):
        return f"the disk under {uri} filled up: make room there and run the same command with --resume"
    return "fix the input and run the same command with --resume to continue"


def _disk_need(study: StudyConfig, plan) -> disk.DiskNeed:
    """The plan's trials, and the replicate phase's (up to two configurations per arm and seed)."""
    extra = 2 * (study.replicates - 1) * len(plan.arms) if study.replicates > 1 else 0
    return disk.need(study, plan.total_trials + extra, plan.expected_iterations + extra * plan.longest_trial)


def _watch(uri: str, need: disk.DiskNeed, concurrent: int) -> disk.DiskWatch:
    from study.hpo.tune_compat import stop_tune_gracefully  # Ray is running by now

    return disk.DiskWatch(uri, disk.reserve(need, concurrent), stop_tune_gracefully)


def _local_cpus(study: StudyConfig) -> int:
    return max(os.cpu_count() or 1, study.num_workers * study.cpus_per_worker)
