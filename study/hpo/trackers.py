"""Experiment trackers through Ray Tune's own logger callbacks: ``--tracker mlflow|wandb|aim``.

Ray docs, "Logging and Outputs in Tune" and the integration guides: ``MLflowLoggerCallback``
(ray.air.integrations.mlflow), ``WandbLoggerCallback`` (ray.air.integrations.wandb) and
``AimLoggerCallback`` (ray.tune.logger.aim). A callback sees what Tune sees: each trial's
config and every result it reports, never the test split's numbers (those reach the
Parquet rows only, trainables/engine/row_writer.py's for_tune). Each result carries
``timesteps_total``, the model's iteration, which the callbacks take as the step.

Where the runs go: MLflow's tracking URI from ``MLFLOW_TRACKING_URI``, else a SQLite store in
the study folder (``sqlite:///RESULTS/NAME/mlflow.db``: MLflow 3 keeps its file store in
maintenance; for ``s3://`` results, MLflow's own default);
W&B's project from ``WANDB_PROJECT`` (default ``rethink-pretraining``), offline with
``WANDB_MODE=offline`` (the run folders in ``RESULTS/NAME/wandb`` for a local folder); Aim's
repository in the study folder. The packages come with the ``trackers`` extra (Aim's:
``pip install aim``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from study.flags import TRACKERS
from trainables.contract import storage
from trainables.contract.errors import ConfigError

if TYPE_CHECKING:  # Ray is imported by the callbacks' own modules, once a study runs
    from ray import tune

PACKAGES = {"mlflow": "mlflow-skinny (the trackers extra)", "wandb": "wandb (the trackers extra)", "aim": "aim"}


def check(names: tuple[str, ...]) -> None:
    """Each tracker's package imports here, or one line naming the tracker and what to
    install (before Ray starts)."""
    for name in names:
        try:
            __import__(name)
        except ImportError as err:
            raise ConfigError(
                f"--tracker {name}: {err} (pip install -e '.[trackers]' or {PACKAGES[name]})", "--tracker"
            ) from None


def callbacks(names: tuple[str, ...], results_uri: str) -> list[tune.Callback]:
    """Tune callbacks for the trackers named, each run named by its Tune trial and grouped
    by the study (its folder's name)."""
    study_name = os.path.basename(results_uri.rstrip("/"))
    local = None if storage.is_uri(results_uri) else os.path.abspath(results_uri)
    made: list[tune.Callback] = []
    for name in names:
        if name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            uri = os.environ.get("MLFLOW_TRACKING_URI") or (f"sqlite:///{local}/mlflow.db" if local else None)
            made.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=study_name, tags={"study": study_name}))
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            extra = {"dir": local} if local else {}
            if os.environ.get("WANDB_MODE"):  # the logging actors' processes may not have the driver's env
                extra["mode"] = os.environ["WANDB_MODE"]
            project = os.environ.get("WANDB_PROJECT", "rethink-pretraining")
            made.append(WandbLoggerCallback(project=project, group=study_name, **extra))
        elif name == "aim":
            from ray.tune.logger.aim import AimLoggerCallback

            made.append(AimLoggerCallback(repo=local, experiment_name=study_name))
        else:
            raise ConfigError(f"--tracker {name}: not one of {', '.join(TRACKERS)}", "--tracker")
    return made
