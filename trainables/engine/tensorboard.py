"""TensorBoard event files of one trial, with the model's iteration as every point's step.

``RESULTS/NAME/tensorboard/ARM/TRIAL/``: ``tensorboard --logdir RESULTS/NAME/tensorboard``
shows one run per trial, grouped by arm. Series are kept apart by phase, so nothing
alternates between trunk and branch (Tune's own TensorBoard plots each report against the
count of reports, trunk and final rows in one series; the study turns it off,
study/hpo/tuning.py):

- ``trunk/...`` the trunk's progress lines (loss, LR, images/s, data wait, ETA, GPU memory)
  and its evaluations at the peak LR;
- ``cooldown_Nx/...`` the progress lines inside schedule N's cooldown (a branch, from its
  fork to its end);
- ``final/...`` each schedule's final result at its last iteration: one curve of final AP
  against the schedule's length.

Only what Tune sees goes here: the test split's numbers stay in the Parquet rows
(row_writer.for_tune). Rank 0 writes with tensorboardX (a dependency of Ray Tune); for
``s3://`` results the files are written on the node's disk and copied next to the rows at
every evaluation through the same storage layer as the rows.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from typing import Any

from tensorboardX import SummaryWriter

from trainables.contract import storage
from trainables.contract.rows import AP_KEYS, KEYPOINT_KEYS, KEYPOINT_LOSS_KEYS, LOSS_KEYS

TB_DIR = "tensorboard"
# What an evaluation row adds as curves: the search split's APs, the losses and the LR then
# (the test split's keys are never among them).
EVAL_KEYS = (*AP_KEYS, *KEYPOINT_KEYS, "loss", *LOSS_KEYS, *KEYPOINT_LOSS_KEYS, "lr_now")


class TrialBoard:
    """One trial's TensorBoard writer: ``scalars`` for progress lines, ``row`` for evaluations."""

    def __init__(self, results_uri: str, arm: str, trial_id: str) -> None:
        self.remote = storage.join(results_uri, TB_DIR, arm, trial_id)
        self.local = self.remote if not storage.is_uri(results_uri) else tempfile.mkdtemp(prefix="rethink-tb-")
        os.makedirs(self.local, exist_ok=True)
        self.writer = SummaryWriter(self.local, flush_secs=30)

    def scalars(self, values: dict[str, float], iteration: int, phase: str) -> None:
        for tag, value in values.items():
            if math.isfinite(value):
                self.writer.add_scalar(f"{phase}/{tag}", value, iteration)

    def row(self, row: dict[str, Any]) -> None:
        """An evaluation row's search-split scores, losses and LR: ``trunk/eval/`` or ``final/eval/``."""
        phase = "final" if row.get("phase") == "final" else "trunk"
        for key in EVAL_KEYS:
            value = row.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"{phase}/eval/{key}", value, int(row["iteration"]))
        self.writer.flush()
        self.publish()

    def publish(self) -> None:
        """Copy the event files next to the rows (s3:// results; a local folder is written in place)."""
        if self.local == self.remote:
            return
        for name in os.listdir(self.local):
            with open(os.path.join(self.local, name), "rb") as f:
                storage.write_bytes_atomic(storage.join(self.remote, name), f.read())

    def close(self) -> None:
        self.writer.close()
        self.publish()
        if self.local != self.remote:
            shutil.rmtree(self.local, ignore_errors=True)
