"""The thin Ray layer of a trial: the per-worker function and the Tune driver function.

Shaped like Ray's own Train-in-Tune pattern (Ray docs, Train user guide "Hyperparameter
optimization"): a Tune trial runs
``train_driver_fn``, which builds a Ray Train trainer named after the trial id (stable across
restores, so Train resumes its own checkpoints) and forwards every report to Tune through
``TuneReportCallback``. ``train_fn_per_worker`` turns Ray Train's context into an engine
``Session``; all training logic lives in trainables/engine/trial.py and trainables/engine/loop.py.

The trainer is Ray Train's public ``TorchTrainer`` (NCCL between GPUs, gloo between
CPUs). The engine is imported inside the worker function, where it runs. The one private
Ray names the trials use live in trainables/engine/ray_compat.py.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import ray
import ray.train
import ray.tune

from trainables.contract import storage
from trainables.contract.config_io import from_dict, to_dict
from trainables.contract.errors import InputError
from trainables.contract.rows import SEARCHED_KEYS
from trainables.contract.trial_config import TrialConfig
from trainables.engine.ray_compat import is_placement_timeout

CHECKPOINT_FILE = "state.pt"
# Tune trial actors ask for a sliver of this custom resource instead of a CPU, so they
# never take a core a Train worker needs (Ray docs, Train user guide "Hyperparameter
# optimization": keep the driver functions off the workers' resources).
DRIVER_RESOURCE = "study_driver"
# Tries to start a trial's worker group before the trial fails (a start that cannot be
# placed waits RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S each time: room for an autoscaler's
# new nodes, never for ever).
CONTROLLER_FAILURE_LIMIT = 3


def train_fn_per_worker(config: dict[str, Any], hooks: tuple = ()) -> dict[str, Any] | None:
    """Runs on every DDP rank; returns the trial's bad input, if it had any (rank 0's
    return value is the Train run's ``Result.return_value``). ``hooks``: extra loop hooks
    (trainables/engine/loop.py's HookBase), e.g. a benchmark's timer."""
    import ray.train.torch
    import torch

    from trainables.engine.ray_compat import quiet_report_logging
    from trainables.engine.trial import run_trial
    from trainables.runtime import Session

    cfg = from_dict(TrialConfig, config)
    quiet_report_logging()
    # Ray sizes each worker's CPU share; keep torch inside it so workers on one node don't
    # oversubscribe the cores (2 workers x 1 CPU on a 2-core laptop, 8 x 10 on a p4d).
    torch.set_num_threads(cfg.cpus_per_worker)
    ctx = ray.train.get_context()
    session = Session(
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        device=ray.train.torch.get_device(),
        report=_report,
        load_checkpoint=_load_checkpoint,
        # Gradients live in DDP's all-reduce buckets: one copy less per step, same values.
        prepare_model=lambda m: ray.train.torch.prepare_model(
            m, parallel_strategy_kwargs={"gradient_as_bucket_view": True}
        ),
        # Our own DistributedSampler (resumable mid-epoch) is kept; Ray moves batches to the device.
        # auto_transfer: the next batch is copied to the GPU on a side stream while the step
        # runs (from the pinned batches of trainables/engine/trial.py's loader_processes);
        # ignored on the CPU. Ray Train's prepare_data_loader, train_loop_utils.py.
        prepare_loader=lambda loader: ray.train.torch.prepare_data_loader(
            loader, add_dist_sampler=False, auto_transfer=True
        ),
        log=lambda msg: print(msg, flush=True),
        hooks=tuple(hooks),
    )
    outcome = run_trial(cfg, session)
    # Bad input ends the run normally: a raised error would make Ray Train restart the
    # workers into the same error max_failures times.
    return {"input_error": outcome["input_error"]} if "input_error" in outcome else None


def _report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
    import torch

    if state is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, os.path.join(tmp, CHECKPOINT_FILE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _load_checkpoint() -> dict[str, Any] | None:
    """The latest checkpoint that loads (trainables/engine/checkpoints.py), or None to start afresh."""
    import pyarrow.fs as pafs
    import torch

    from trainables.engine.checkpoints import first_loadable, older_first_newest

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    fs, latest = checkpoint.filesystem, checkpoint.path
    parent = latest.rstrip("/").rsplit("/", 1)[0]
    siblings = [
        info.path
        for info in fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
        if info.type == pafs.FileType.Directory
    ]

    def load(folder: str) -> dict[str, Any]:
        with ray.train.Checkpoint(path=folder, filesystem=fs).as_directory() as local:
            return torch.load(os.path.join(local, CHECKPOINT_FILE), map_location="cpu", weights_only=False)

    rank = ray.train.get_context().get_world_rank()
    trial = ray.train.get_context().get_experiment_name()
    log = (lambda msg: print(f"[{trial}] {msg}", flush=True)) if rank == 0 else None
    state, _ = first_loadable(older_first_newest(latest, siblings), load, log)
    return state


def trial_config(
    config: dict[str, Any],
    arms: dict[str, dict[str, Any]],
    trial_id: str,
    backbones: dict[str, dict[int, dict[str, Any]]] | None = None,
) -> TrialConfig:
    """The full trial config: the arm's fixed base plus the searched values; ``backbones``
    (arm -> seed -> generated pretraining spec) gives a replicate seed its own pretraining."""
    arm = config["arm"]
    if arm not in arms:
        raise KeyError(f"unknown arm {arm!r} (known: {', '.join(arms)})")
    searched = {k: config[k] for k in SEARCHED_KEYS if k in config}
    merged = {**arms[arm], **searched, "trial_id": trial_id}
    own = (backbones or {}).get(arm, {})
    seed = int(merged["seed"])
    if seed in own:
        merged["pretrain"] = own[seed]
    return from_dict(TrialConfig, merged)


def train_driver_fn(
    config: dict[str, Any],
    arms: dict[str, dict[str, Any]],
    backbones: dict[str, dict[int, dict[str, Any]]] | None = None,
    worker_fn: Callable[[dict[str, Any]], Any] = train_fn_per_worker,
) -> None:
    """One Tune trial = one Ray Train run of ``num_workers`` DDP workers, each running
    ``worker_fn`` (``train_fn_per_worker``; a benchmark passes its own, which adds hooks)."""
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = ray.tune.get_context().get_trial_id()
    cfg = trial_config(config, arms, trial_id, backbones)
    resources = {"CPU": cfg.cpus_per_worker, **cfg.worker_resources}
    if cfg.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        worker_fn,
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        train_loop_config=to_dict(cfg),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            # No timestamp: a restored trial must find this run's checkpoints again.
            name=f"train-{trial_id}",
            storage_path=storage.join(cfg.results_uri, "train"),
            callbacks=[TuneReportCallback()],
            # A bounded controller_failure_limit: an unschedulable worker group fails the
            # trial instead of retrying forever (ray.train.FailureConfig: the default -1 retries
            # forever).
            failure_config=ray.train.FailureConfig(
                max_failures=cfg.max_failures, controller_failure_limit=CONTROLLER_FAILURE_LIMIT
            ),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            # Ray Train logs each report's whole metrics dict at INFO; the engine prints one
            # line per evaluation instead.
            logging_config=ray.LoggingConfig(log_level="WARNING"),
        ),
    )
    # A failure after max_failures restarts propagates to Tune, whose callback marks the
    # trial's last row "failed" (study/hpo/tuning.py).
    try:
        result = trainer.fit()
    except ray.train.ControllerError as err:
        if not is_placement_timeout(err):
            raise
        # One line that names what the trial waited for, instead of Train's retry log.
        attempts = CONTROLLER_FAILURE_LIMIT + 1
        timeout = float(os.environ.get("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "60"))
        raise TrialPlacementError(
            f"{cfg.num_workers} worker(s) of {resources} each could not be placed in {attempts} attempts of "
            f"{timeout:g} s (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S); free in the cluster now: "
            f"{ray.available_resources()}"
        ) from None
    failure = (result.return_value or {}).get("input_error") if isinstance(result.return_value, dict) else None
    if failure:
        # The trial's error in Tune, raised once: Tune's FailureConfig does not retry trials
        # (study/hpo/tuning.py), and the workers did not raise, so Train did not either.
        raise TrialInputError(failure)


class TrialPlacementError(RuntimeError):
    """A trial whose workers could not be placed within the stated time; the study goes on."""


class TrialInputError(InputError):
    """A trial's bad input, as its workers agreed on it; the trial's error in Tune."""

    def __init__(self, failure: dict[str, Any]) -> None:
        ranks = ", ".join(map(str, failure.get("ranks", ())))
        where = f" (rank {ranks} on {', '.join(failure.get('nodes', ()))})" if ranks else ""
        super().__init__(
            f"{failure['type']}: {failure['message']}{where}; full log: {failure.get('log')}", failure.get("field")
        )
        self.failure = failure

    def __reduce__(self):
        return type(self), (self.failure,)
