"""The Ray Tune layer: starting Ray, building the Tuner, marking final statuses.

This and trainables/ray_entry.py are the only modules that import Ray. One Tune trial is
one Ray Train run (``train_driver_fn``); the trial actor itself asks only for a sliver of a
custom resource, so it never holds a CPU that a Train worker needs.
"""

from __future__ import annotations

import os
from typing import Any

import ray
from ray import tune

from trainables import results, storage
from trainables.ray_entry import DRIVER_RESOURCE, train_driver_fn

TUNE_DIR = "tune"
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
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=True)
        return
    # address="local" always starts a new Ray, never one another process left behind
    # (ray_notes.md section 8); the dashboard brings the State API that frees the
    # placement group of a stopped trial (ray_notes.md section 9).
    ray.init(address="local", num_cpus=num_cpus, resources={DRIVER_RESOURCE: 1000}, include_dashboard=True,
             object_store_memory=512 * 2**20, runtime_env={"env_vars": env})


def driver_resources() -> dict[str, float]:
    """What one trial actor asks for: the driver resource if the cluster has it, else a CPU sliver."""
    if ray.cluster_resources().get(DRIVER_RESOURCE):
        return {DRIVER_RESOURCE: 0.01}
    print(f"warning: the cluster advertises no '{DRIVER_RESOURCE}' resource; trial actors take 0.01 CPU each")
    return {"CPU": 0.01}


class FinalStatus(tune.Callback):
    """Writes "stopped"/"failed" into a trial's last row when Tune ends it early.

    A trial that finishes reports "completed" (or "diverged") itself; one that Tune stops
    (early stopping) or that errors never gets the chance, so its last row still says
    "running" until this callback rewrites it.
    """

    def __init__(self, results_uri: str) -> None:
        self.results_uri = results_uri

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        if (trial.last_result or {}).get("status") == "running":
            results.mark_status(self.results_uri, trial.trial_id, "stopped")

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        results.mark_status(self.results_uri, trial.trial_id, "failed", only_if=("running", "completed"))


def trainable(arms: dict[str, dict[str, Any]], resources: dict[str, float]):
    return tune.with_resources(tune.with_parameters(train_driver_fn, arms=arms), resources)


def run_config(results_uri: str, callbacks: list | None = None) -> tune.RunConfig:
    return tune.RunConfig(
        name=TUNE_DIR,
        storage_path=results_uri if storage.is_uri(results_uri) else os.path.abspath(results_uri),
        callbacks=[FinalStatus(results_uri), *(callbacks or [])],
        # Status table and trial starts/ends; each evaluation is one line from the workers.
        verbose=1,
        # A trial whose driver actor dies is retried; Train resumes from its checkpoint.
        failure_config=tune.FailureConfig(max_failures=2),
    )


def run_single_trial(arms: dict[str, dict[str, Any]], values: dict[str, Any], results_uri: str, metric: str,
                     resume: bool) -> tune.ResultGrid:
    """One trial with fixed values, through the same Tune + Train path as a study."""
    experiment = storage.join(results_uri, TUNE_DIR)
    fn = trainable(arms, driver_resources())
    if resume and tune.Tuner.can_restore(experiment):
        tuner = tune.Tuner.restore(experiment, fn, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(fn, param_space=values,
                           tune_config=tune.TuneConfig(num_samples=1, metric=metric, mode="max"),
                           run_config=run_config(results_uri))
    return tuner.fit()
