"""The driver's console while a study runs: Tune's status table (classic output, with the
columns one watches) every PROGRESS_S seconds, beside the study's progress line
(study/hpo/study_progress.py) and the trials' own lines forwarded from the workers."""

from __future__ import annotations

import os

from ray import tune

# Seconds between Tune's status tables and the study's progress lines in the driver's log.
PROGRESS_S = 30
# What one watches in Tune's status table: the trial's arm and searched values (from its
# config) and where its last result is (schedule, iteration, AP).
TABLE_PARAMETERS = {"arm": "arm", "lr": "lr", "weight_decay": "weight decay", "schedule": "trunk"}
TABLE_METRICS = {
    "phase": "phase",
    "schedule": "schedule",
    "iteration": "iteration",
    "bbox_AP": "bbox AP",
    "segm_AP": "segm AP",
    "keypoints_AP": "keypoints AP",  # a keypoint task's (Tune leaves out a column no trial has)
}


def classic_console() -> None:
    """Use Tune's classic console output, which shows status_table()'s columns.

    Tune's newer output picks its table columns itself (the first few numbers of a result)
    and ignores a progress reporter; Tune reads this switch when a run starts.
    """
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"


def status_table() -> tune.CLIReporter:
    """Tune's status table with TABLE_PARAMETERS and TABLE_METRICS."""
    classic_console()
    return tune.CLIReporter(
        parameter_columns=TABLE_PARAMETERS,
        metric_columns=TABLE_METRICS,
        max_report_frequency=PROGRESS_S,
        max_column_length=24,
    )
