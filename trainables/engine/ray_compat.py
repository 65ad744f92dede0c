"""Every private Ray name the trials use, in one place (Ray is pinned in pyproject.toml;
tests/test_compat.py fails when an upgrade moves one).

Study-side (Tune) private names live in study/hpo/tune_compat.py.
"""

from __future__ import annotations

import logging

# Ray Train V2 logs each report's whole metrics dict at INFO from this module's logger,
# which is named after its file path; RunConfig's LoggingConfig level (which filters
# "ray.train*" names) does not reach it.
REPORT_LOGGER_MODULE = "ray.train.v2._internal.execution.context"


def quiet_report_logging() -> None:
    """Drop Ray Train's INFO line that repeats each report's metrics (the engine prints one
    line per evaluation instead)."""
    import importlib

    try:
        module = importlib.import_module(REPORT_LOGGER_MODULE)
    except ImportError:  # a Ray without this module has nothing to quiet
        return
    logging.getLogger(module.__file__).setLevel(logging.WARNING)


def is_placement_timeout(error: BaseException) -> bool:
    """Whether Ray Train gave up because its worker group could not be placed in time: a
    ``ControllerError`` (public) around ``WorkerGroupStartupTimeoutError`` (private)."""
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    return isinstance(getattr(error, "controller_failure", None), WorkerGroupStartupTimeoutError)
