"""The Ray Tune layer: starting Ray, building the Tuner, marking final statuses.

Ray is imported only here, in study/hpo/search.py and study/hpo/scheduler.py (the Tune layer) and
in trainables/engine/ray_entry.py (the Train layer). One Tune trial is
one Ray Train run (``train_driver_fn``); the trial actor itself asks only for a sliver of a
custom resource, so it never holds a CPU that a Train worker needs.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import socket
from typing import Any

import pandas as pd
import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.search import BasicVariantGenerator

from analysis.results import load_results
from study.hpo import failures, optuna_db, replicate_phase, study_progress
from study.hpo.console import PROGRESS_S, classic_console, status_table
from study.hpo.scheduler import ScheduleRungs
from study.hpo.search import build_search
from study.hpo.trackers import callbacks as tracker_callbacks
from study.hpo.tune_compat import ResumableSearch
from study.spec.resolved import ResolvedStudy
from trainables.contract import row_store, storage
from trainables.contract.rows import COMPLETED, DIVERGED, FAILED, RUNNING, STOPPED, is_own_final
from trainables.engine.ray_entry import DRIVER_RESOURCE, train_driver_fn

logger = logging.getLogger(__name__)
TUNE_DIR = "tune"
REPLICATES_DIR = "tune-replicates"
# Environment every Ray worker process gets (local runs and clusters alike).
WORKER_ENV = {
    # Workers keep the caller's working directory, so relative data paths still resolve.
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "PYTHONUNBUFFERED": "1",
    # Train V2 reroutes print() to a logger, which defeats contextlib.redirect_stdout and
    # lets pycocotools' chatter through; plain print keeps worker output as written.
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    # Importing torch in a fresh worker takes ~15 s on 2 cores; Ray's default is 60 s.
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "180",
}


def start_ray(address: str | None, num_cpus: int) -> None:
    """Connect to ``address`` (or ``$RAY_ADDRESS``), else start a private local Ray.

    A Ray this process already started is reused (tests run several commands in one Ray).
    """
    if ray.is_initialized():
        return
    env = dict(WORKER_ENV)
    if os.environ.get("RETHINK_CACHE"):
        env["RETHINK_CACHE"] = os.environ["RETHINK_CACHE"]
    os.environ.update(WORKER_ENV)
    # Save Tune's experiment state (trials, searcher) every 10 s rather than "auto", so a
    # killed driver loses as little as possible of what it had started.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "10")
    # Only the loggers run_config names (Ray docs, "Environment variables used by Ray Tune").
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # Every trial's lines as they come: Ray's log deduplication folds lines that differ only
    # in words with digits across processes (Ray docs, "Log deduplication"), so concurrent
    # trials' progress lines, whose ids and numbers differ, would print as one.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        if address != "auto":
            # Every process of the study that looks a Ray up (Train's placement-group
            # cleaner uses the State API) finds this one, never another Ray on the machine;
            # an API-server address inherited from elsewhere would take precedence (empty:
            # unset).
            env["RAY_ADDRESS"] = address
            env["RAY_API_SERVER_ADDRESS"] = ""
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=True)
        return
    # A local Ray runs on no spot node: Train's preemption watcher would be one more actor
    # process to start per trial, competing for the cores the trial's workers import on.
    # Train's controller notices finished workers at its next poll (every 2 s by default,
    # ray.train.v2 constants RAY_TRAIN_HEALTH_CHECK_INTERVAL_S): on one machine a 0.25 s
    # poll ends each trial about 1 s sooner, at the cost of a few cheap calls per second.
    local_env = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}
    os.environ.update(local_env)
    env.update(local_env)
    # address="local" always starts a new Ray, never one another process left behind
    # (Ray docs, ray.init: address="local"); the dashboard brings the State API that
    # frees the placement group of a stopped trial (ray-project/ray#54305).
    # With another Ray on the machine, the State API that Train's placement-group cleaner
    # calls would find "the latest cluster" (ray/dashboard/utils.py,
    # get_address_for_submission_client) and could hang on it; the address of this Ray's
    # own dashboard, chosen here, is given to every process instead.
    port = _free_port()
    env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    ray.init(
        address="local",
        num_cpus=num_cpus,
        resources={DRIVER_RESOURCE: 1000},
        include_dashboard=True,
        dashboard_port=port,
        object_store_memory=512 * 2**20,
        runtime_env={"env_vars": env},
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def driver_resources() -> dict[str, float]:
    """What one trial actor asks for: the driver resource if the cluster has it, else a CPU sliver."""
    if ray.cluster_resources().get(DRIVER_RESOURCE):
        return {DRIVER_RESOURCE: 0.01}
    logger.warning("the cluster advertises no '%s' resource; trial actors take 0.01 CPU each", DRIVER_RESOURCE)
    return {"CPU": 0.01}


def ended_early(result: dict[str, Any] | None) -> bool:
    """Whether a trial's last result is short of its own schedule's final (nor diverged)."""
    result = result or {}
    if result.get("status") == DIVERGED:
        return False
    return not is_own_final(result)


class FinalStatus(tune.Callback):
    """Writes "stopped"/"failed" into a trial's last row when Tune ends it early.

    A trial that finishes reports its own schedule's final row (or "diverged") itself; one
    that Tune stops at a schedule rung or that errors never gets the chance, and its last
    trunk row still says "running" until this callback rewrites it (a shorter schedule's
    final row is a finished result and keeps "completed").
    """

    def __init__(self, results_uri: str) -> None:
        self.results_uri = results_uri

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        if ended_early(trial.last_result):
            row_store.mark_status(self.results_uri, trial.trial_id, STOPPED)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        row_store.mark_status(self.results_uri, trial.trial_id, FAILED, only_if=(RUNNING, COMPLETED))


def trainable(
    arms: dict[str, dict[str, Any]],
    resources: dict[str, float],
    backbones: dict[str, dict[int, dict[str, Any]]] | None = None,
):
    """Tune's trainable; ``backbones`` gives replicate seeds their own pretraining."""
    return tune.with_resources(tune.with_parameters(train_driver_fn, arms=arms, backbones=backbones), resources)


def run_config(results_uri: str, callbacks: list | None = None, name: str = TUNE_DIR) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=results_uri if storage.is_uri(results_uri) else os.path.abspath(results_uri),
        # Tune's result files, without its TensorBoard logger: each trial writes its own
        # curves against the model's iteration (trainables/engine/tensorboard.py); Tune's
        # would plot trunk and final rows as one series against the count of reports.
        callbacks=[FinalStatus(results_uri), CSVLoggerCallback(), JsonLoggerCallback(), *(callbacks or [])],
        # Status table and trial starts/ends; each evaluation is one line from the workers.
        verbose=1,
        progress_reporter=status_table(),
        # No trial is rerun by Tune: Ray Train already restarts lost workers and nodes from
        # the last checkpoint (the trial's max_failures), a rerun would repeat a bad input
        # error (trainables/contract/errors.py), and a trial whose own driver died is resumed by
        # --resume, which resumes errored trials from their checkpoints.
        failure_config=tune.FailureConfig(max_failures=0),
    )


def run_single_trial(
    arms: dict[str, dict[str, Any]],
    values: dict[str, Any],
    results_uri: str,
    metric: str,
    resume: bool,
    trackers: tuple[str, ...] = (),
) -> tune.ResultGrid:
    """One trial with fixed values, through the same Tune + Train path as a study."""
    experiment = storage.join(results_uri, TUNE_DIR)
    fn = trainable(arms, driver_resources())
    tuner = restored(experiment, fn) if resume else None
    if tuner is None:
        tuner = tune.Tuner(
            fn,
            param_space=values,
            tune_config=tune.TuneConfig(num_samples=1, metric=metric, mode="max"),
            run_config=run_config(results_uri, tracker_callbacks(trackers, results_uri)),
        )
    return tuner.fit()


def restored(experiment: str, fn) -> tune.Tuner | None:
    """The interrupted experiment at ``experiment``, its unfinished and errored trials to
    resume from their checkpoints; None when there is none to restore."""
    if not tune.Tuner.can_restore(experiment):
        return None
    classic_console()  # the restored run config holds its status table
    return tune.Tuner.restore(experiment, fn, resume_unfinished=True, resume_errored=True)


def build_scheduler(resolved: ResolvedStudy, results_uri: str):
    study = resolved.study
    if not study.early_stopping.enabled:
        return None
    # After --resume the rungs are rebuilt from the rows already written (scheduler.py).
    recipes = {
        spec.name: (spec.recipe["lr"], spec.recipe["weight_decay"], spec.recipe["schedule"]) for spec in resolved.arms
    }
    return ScheduleRungs(
        study.objective,
        study.early_stopping.reduction_factor,
        history=functools.partial(row_store.read_rows, results_uri),
        seed_std=study.early_stopping.seed_std,
        recipes=recipes,
    )


def run_study(
    resolved: ResolvedStudy,
    arms: dict[str, dict[str, Any]],
    num_samples: int,
    results_uri: str,
    max_concurrent: int,
    resume: bool,
    planned: int = 0,
    trackers: tuple[str, ...] = (),
) -> tune.ResultGrid:
    """Every arm's search in one Tune experiment; ``resume`` continues an interrupted one.

    Errored trials resume too, from their last checkpoint (after the input that failed them
    was fixed); Optuna, told they failed, gets their results as trials of their own.
    ``planned``: the plan's iterations, for the study's progress line (0: none);
    ``trackers``: experiment trackers to log to (study/hpo/trackers.py).
    """
    study = resolved.study
    experiment = storage.join(results_uri, TUNE_DIR)
    fn = trainable(arms, driver_resources())
    tuner = restored(experiment, fn) if resume else None
    if tuner is None:
        search = build_search(resolved, num_samples, results_uri, arms)
        if resume:  # killed before Tune first saved its state: nothing to restore
            search.fail_orphans()
        search.set_max_concurrency(max_concurrent)
        tuner = tune.Tuner(
            fn,
            tune_config=tune.TuneConfig(
                search_alg=ResumableSearch(search),
                scheduler=build_scheduler(resolved, results_uri),
                num_samples=num_samples * len(arms),
                metric=study.objective,
                mode="max",
            ),
            # A restored Tuner keeps the callbacks it was built with (pickled with its run
            # config); the progress line's state is reset as each run starts.
            run_config=run_config(
                results_uri,
                [
                    *study_progress.callbacks(results_uri, planned, "study", PROGRESS_S),
                    *tracker_callbacks(trackers, results_uri),
                ],
            ),
        )
    grid = tuner.fit()
    reconcile_statuses(grid, results_uri)
    optuna_db.publish(results_uri, study.optuna_storage)
    return grid


def run_replicates(
    resolved: ResolvedStudy,
    arms: dict[str, dict[str, Any]],
    results_uri: str,
    max_concurrent: int,
    log=print,
    backbones: dict[str, dict[int, dict[str, Any]]] | None = None,
    trackers: tuple[str, ...] = (),
) -> list[tune.ResultGrid]:
    """The replicate phase (study/hpo/replicate_phase.py): fixed trials, no search, no early stopping.

    Each round is one Tune experiment (``tune-replicates``, then ``-1``, ...). A round that
    can be restored was interrupted: it resumes first, its unfinished trials from their
    checkpoints. Then the trials still missing (none, unless ``replicates`` grew on
    ``--resume``) run in a new round. ``backbones``: each pretrained arm's generated
    pretraining per seed (study/workspace.py's seed_backbones).
    """
    study = resolved.study
    fn = trainable(arms, driver_resources(), backbones)
    grids = []
    for round_ in itertools.count():
        experiment = storage.join(results_uri, f"{REPLICATES_DIR}-{round_}" if round_ else REPLICATES_DIR)
        interrupted = restored(experiment, fn)
        if interrupted is not None:
            grid = interrupted.fit()
            reconcile_statuses(grid, results_uri)
            grids.append(grid)
            continue
        try:
            df = load_results(results_uri)
        except FileNotFoundError:
            df = pd.DataFrame()
        chosen = replicate_phase.load_or_choose(resolved, df, results_uri)
        points = replicate_phase.pending_points(study, chosen, df)
        log(replicate_phase.describe(study, chosen, points))
        if not points:
            break
        tuner = tune.Tuner(
            fn,
            # Placeholders: each trial's values are one of the points (Tune's variant
            # generator fills only keys the space has).
            param_space=dict.fromkeys(points[0]),
            tune_config=tune.TuneConfig(
                search_alg=BasicVariantGenerator(points_to_evaluate=points, max_concurrent=max_concurrent),
                num_samples=len(points),
                metric=study.objective,
                mode="max",
            ),
            run_config=run_config(
                results_uri,
                [
                    *study_progress.callbacks(
                        results_uri,
                        study_progress.iterations(resolved, points),
                        "replicates",
                        PROGRESS_S,
                        counted=False,
                    ),
                    *tracker_callbacks(trackers, results_uri),
                ],
                name=os.path.basename(experiment),
            ),
        )
        grid = tuner.fit()
        reconcile_statuses(grid, results_uri)
        grids.append(grid)
        break
    return grids


def failed_trials(grid: tune.ResultGrid, results_uri: str) -> list[failures.Failure]:
    """One entry per trial that ended in error: its bad-input record, else Tune's error."""
    found = []
    for result in grid:
        if not result.error:
            continue
        trial_id = (result.metrics or {}).get("trial_id") or os.path.basename(result.path)
        arm = (result.config or {}).get("arm", "?")
        record = failures.input_failure(results_uri, trial_id)
        if record is not None:
            found.append(failures.from_record(record))
        else:
            found.append(failures.from_exception(trial_id, arm, result.error, storage.join(result.path, "error.txt")))
    return sorted(found, key=lambda f: (f.arm, f.trial_id))


def reconcile_statuses(grid: tune.ResultGrid, results_uri: str) -> None:
    """Final statuses from Tune's own record, also for trials ended before a restart.

    A trial whose last result is short of its own schedule's final was stopped early, and
    Optuna was told it was pruned; its workers may have written one more row before they
    were stopped (a trunk row, or even its own final), which then says "stopped" too, so
    Parquet, Tune and Optuna agree. An errored trial failed.
    """
    for result in grid:
        trial_id = (result.metrics or {}).get("trial_id")
        if not trial_id:
            continue
        if result.error:
            row_store.mark_status(results_uri, trial_id, FAILED, only_if=(RUNNING, COMPLETED))
        elif ended_early(result.metrics) and row_store.finished_row(results_uri, trial_id) is None:
            # (A trial whose rows end with its own final finished: a driver stopped as it
            # reported missed that report, and Optuna is told it from the rows.)
            row_store.mark_status(results_uri, trial_id, STOPPED, only_if=(RUNNING, COMPLETED))
