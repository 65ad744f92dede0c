"""The rows' contract, in one leaf module: columns and types of a row, phases, statuses,
the keys that identify rows and arms, the predicates that classify a row, and the file
names of a study folder.

Trials write rows with it (trainables/contract/row_store.py), the study marks statuses and feeds its
searchers with it (study/), and analysis reads with it. It imports only pyarrow, so any of
them can import it without pulling in the others (nor pandas, torch or Ray).
"""

from __future__ import annotations

import math

import pyarrow as pa

STUDY_FILE = "study.json"  # the resolved configuration, beside the rows
METRICS_DIR = "metrics"  # one Parquet file per row

# Where a row's model is: "trunk" (evaluated at the peak LR, before its LR dropped) or
# "final" (a schedule's result at its end, after its cooldown); Ray reports "checkpoint"
# too, which is never a row.
TRUNK, FINAL, CHECKPOINT = "trunk", "final", "checkpoint"
# A row's status: a trunk row "running" (or, on a trial's last row, "stopped"/"failed"),
# a final row "completed", or "diverged" (NaN/inf loss, AP 0.0).
RUNNING, COMPLETED, STOPPED, FAILED, DIVERGED = "running", "completed", "stopped", "failed", "diverged"
# How a trial ended (analysis.trial_rows' trial_status), in the order tables list them.
TRIAL_STATUSES = (COMPLETED, STOPPED, DIVERGED, FAILED, RUNNING)

# A row is one evaluation of one trial; within a trial, rows are ordered (and named) by
# the iterations computed so far, trunk plus branches (a branch's final and a trunk row
# may share an ``iteration``).
ROW_KEY = ("trial_id", "cost_iterations")
# One schedule's result of one trial.
RESULT_KEY = ("trial_id", "schedule")
# The scientific axes that make an arm (a separate search each); selectors name one.
ARM_KEYS = ("model", "data_fraction", "init")
# The searched nuisance hyperparameters of a trial, and with the seed what a Tune trial's
# config adds to its arm's fixed base.
RECIPE_KEYS = ("lr", "weight_decay", "schedule")
SEARCHED_KEYS = (*RECIPE_KEYS, "seed")

LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
# A keypoint task's model (data.keypoints) has one loss more; null in other rows.
KEYPOINT_LOSS_KEYS = ("loss_keypoint",)
_AP_SUFFIXES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # pycocotools' stats[0:6]
BBOX_KEYS = tuple(f"bbox_{s}" for s in _AP_SUFFIXES)
SEGM_KEYS = tuple(f"segm_{s}" for s in _AP_SUFFIXES)
AP_KEYS = BBOX_KEYS + SEGM_KEYS
# Keypoint AP (OKS), pycocotools' stats[0:5] for keypoints (no small objects), as the
# evaluator returns it for predictions with keypoints (trainables/evaluation/coco_eval.py).
KEYPOINT_KEYS = tuple(f"keypoints_{s}" for s in ("AP", "AP50", "AP75", "APm", "APl"))
# The same on the test split: only at a schedule's final result (trainables/data/splits.py). The
# unprefixed AP_KEYS are the search split's, the only ones Tune and Optuna see.
TEST_AP_KEYS = tuple(f"test_{k}" for k in AP_KEYS)
TEST_KEYPOINT_KEYS = tuple(f"test_{k}" for k in KEYPOINT_KEYS)

SCHEMA = pa.schema(
    [
        ("study", pa.string()),
        ("arm", pa.string()),
        ("trial_id", pa.string()),
        ("init", pa.string()),
        ("data_fraction", pa.float64()),
        ("train_images", pa.int64()),
        ("model", pa.string()),
        ("norm", pa.string()),
        ("lr", pa.float64()),
        ("weight_decay", pa.float64()),
        # The schedule this row belongs to (a final row's own; the trunk's for trunk rows),
        # and the trial's trunk schedule (the longest it trains, the searched value).
        ("schedule", pa.float64()),
        ("trunk_schedule", pa.float64()),
        ("phase", pa.string()),
        ("batch_size", pa.int64()),
        ("seed", pa.int64()),
        ("num_workers", pa.int64()),
        ("iteration", pa.int64()),
        ("max_iterations", pa.int64()),
        # A final row: where its branch left the trunk (its schedule's first LR drop).
        ("fork_iteration", pa.int64()),
        # What this row's model was trained on (a final row: s * B * batch).
        ("images_seen", pa.int64()),
        # What the trial had computed when it wrote the row: trunk plus branches so far.
        ("cost_iterations", pa.int64()),
        ("cost_images", pa.int64()),
        ("lr_now", pa.float64()),
        ("loss", pa.float64()),
        *[(k, pa.float64()) for k in LOSS_KEYS],
        *[(k, pa.float64()) for k in AP_KEYS],
        *[(k, pa.float64()) for k in TEST_AP_KEYS],
        # A keypoint task's: its loss and keypoint AP (OKS) on both splits; null otherwise.
        *[(k, pa.float64()) for k in KEYPOINT_LOSS_KEYS],
        *[(k, pa.float64()) for k in KEYPOINT_KEYS],
        *[(k, pa.float64()) for k in TEST_KEYPOINT_KEYS],
        ("wall_time_s", pa.float64()),
        # Training images replaced so far because they could not be read.
        ("skipped_images", pa.int64()),
        # Annotations of the training images with a box under 1 px, which training leaves out.
        ("left_out_annotations", pa.int64()),
        ("status", pa.string()),
        # The iteration this attempt resumed from after a restart (null for a fresh start).
        ("resumed_from", pa.int64()),
        ("code_version", pa.string()),
        ("pretrain_images_seen", pa.int64()),
        ("written_at", pa.float64()),
    ]
)
COLUMNS = tuple(SCHEMA.names)


def loss_keys(keypoints: bool) -> tuple[str, ...]:
    """The model's losses in a row, in order: Mask R-CNN's, and a keypoint task's own."""
    return LOSS_KEYS + (KEYPOINT_LOSS_KEYS if keypoints else ())


def ap_keys(keypoints: bool) -> tuple[str, ...]:
    """The search split's AP columns an evaluation fills (the test split's are these
    prefixed ``test_``)."""
    return AP_KEYS + (KEYPOINT_KEYS if keypoints else ())


def is_own_final(row) -> bool:
    """A trial's own result: the final row of its trunk schedule (the longest it trains).

    ``row`` is a dict, a pandas row or a whole DataFrame (then a boolean Series): the same
    test everywhere a row is classified.
    """
    return (row.get("phase") == FINAL) & (row.get("schedule") == row.get("trunk_schedule"))


def is_branch_final(row) -> bool:
    """A shorter schedule's final row, scored on a branch before the trial went on."""
    return (row.get("phase") == FINAL) & (row.get("schedule") != row.get("trunk_schedule"))


def is_completed_final(row, metric: str | None = None) -> bool:
    """A schedule's final result that completed (not diverged), with a value of ``metric``
    where one is named: the results the search, early stopping, the replicate phase and the
    report count. ``row`` is a dict, a pandas row or a whole DataFrame, as above."""
    done = (row.get("phase") == FINAL) & (row.get("status") == COMPLETED)
    if metric is None:
        return done
    value = row.get(metric)
    if hasattr(value, "notna"):
        return done & value.notna()
    return done and value is not None and not (isinstance(value, float) and math.isnan(value))


# Which of two results is better, one rule for the early-stopping rungs, the best trial and the
# report: the objective, with the training loss as tie-breaker. The loss (capped at 10) moves
# the score by at most 0.001, a tenth of one AP point, so it only decides between results whose
# objective is (nearly) equal; a missing or non-finite loss counts as the cap.
LOSS_WEIGHT = 1e-4
LOSS_CAP = 10.0


def ranking_score(value: float, loss: float | None) -> float:
    """``value`` (the objective) less the capped training loss's tie-breaking weight."""
    penalty = LOSS_CAP if loss is None or not math.isfinite(loss) else min(loss, LOSS_CAP)
    return float(value) - LOSS_WEIGHT * penalty
