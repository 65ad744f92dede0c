"""The disk a study needs under ``--results``, and what to say when it runs out.

Checkpoints are most of it: Ray Train keeps the last ``KEEP`` of every trial, finished ones
included (trainables/engine/ray_entry.py), and a checkpoint holds the weights and SGD's momentum,
twice inside a cooldown (the trunk is kept at the fork, trainables/engine/branches.py). The plan
states the total and warns when the results' filesystem has less; while the study runs,
``DiskWatch`` stops it cleanly before a checkpoint could no longer be written, and any
write that still meets a full disk ends the driver in one line (``out_of_space_line``).
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass

from study.spec.study_config import StudyConfig
from trainables.contract import storage
from trainables.contract.trial_config import ModelConfig

KEEP = 2  # checkpoints Ray Train keeps per trial (CheckpointConfig(num_to_keep=2))
ROW_BYTES = 16 * 2**10  # one Parquet row shard, rounded up
SLACK = 32 * 2**20  # Tune's folder, optuna.db, study.json, the report and its figures
SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def model_params(m: ModelConfig, num_classes: int) -> int:
    """The weights of trainables/model/mask_rcnn.py's Mask R-CNN, counted from its config without
    torch (so that ``--dry-run`` stays fast): every conv and linear layer of the ResNet body,
    the FPN, the RPN head and the box and mask heads; norms and biases are left out (under 1 %
    of it; tests/engine/test_faults.py checks the count against the built model)."""
    expansion, convs = (1, (3, 3)) if m.depth == 18 else (4, (1, 3, 1))
    blocks = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[m.depth]
    total, inplanes = 3 * m.width * 49, m.width
    for stage, count in enumerate(blocks):
        planes = m.width * 2**stage
        for index in range(count):
            if index == 0 and (stage > 0 or inplanes != planes * expansion):
                total += inplanes * planes * expansion  # the 1x1 downsample
            if expansion == 1:
                total += inplanes * planes * 9 + planes * planes * 9
            else:
                total += inplanes * planes + planes * planes * 9 + planes * planes * expansion
            inplanes = planes * expansion
    c, classes = m.fpn_channels, num_classes + 1
    total += sum(m.width * 2**i * expansion * c + c * c * 9 for i in range(4))  # FPN lateral and output
    total += c * c * 9 + c * 3 * 5  # RPN: conv, objectness and deltas of 3 anchors
    fc_in = c * 49
    total += m.box_head_convs * c * c * 9
    total += fc_in * m.box_head_fc if m.box_head_convs else fc_in * m.box_head_fc + m.box_head_fc**2
    total += m.box_head_fc * classes * 5  # class scores and box deltas
    total += m.mask_head_convs * c * c * 9 + c * c * 4 + c * classes  # convs, deconv, mask logits
    return total


def checkpoint_bytes(study: StudyConfig) -> int:
    """The largest checkpoint of any of the study's models: 4-byte weights and momentum,
    twice (trunk and branch)."""
    classes = study.data.synthetic.categories if study.data.source == "synthetic" else 80
    largest = max(model_params(study.models[name], classes) for name in study.axes.model)
    return 16 * largest + 2**20


@dataclass(frozen=True)
class DiskNeed:
    checkpoint: int
    trials: int
    evaluations: int

    @property
    def total(self) -> int:
        return self.trials * KEEP * self.checkpoint + self.evaluations * ROW_BYTES + SLACK


def need(study: StudyConfig, trials: int, iterations: int) -> DiskNeed:
    """For ``trials`` trials (replicates included) that train ``iterations`` in all: one row per
    trunk evaluation, and one per schedule a trial scores."""
    schedules = max(len(study.search.schedule), 1)
    evaluations = iterations // max(study.eval_period or iterations, 1) + trials * schedules
    return DiskNeed(checkpoint_bytes(study), trials, evaluations)


def reserve(need: DiskNeed, concurrent: int) -> int:
    """The free space below which the study stops: a checkpoint for every trial running, and
    room for rows and Tune's state."""
    return max(concurrent, 1) * need.checkpoint + 8 * 2**20


def free_bytes(uri: str) -> int | None:
    """Free space on the filesystem that holds ``uri`` (its nearest existing folder); None for URIs."""
    if storage.is_uri(uri):
        return None
    path = os.path.abspath(uri)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return shutil.disk_usage(path).free


def mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n < 10 * 2**30 else f"{n / 2**30:,.1f} GB"


def plan_line(need: DiskNeed, uri: str) -> str:
    line = (
        f"  disk: about {mb(need.total)} under {uri} ({need.trials} trial{'s' if need.trials != 1 else ''} x {KEEP} "
        f"checkpoints of up to "
        f"{mb(need.checkpoint)}, rows, Optuna)"
    )
    free = free_bytes(uri)
    if free is not None and free < need.total:
        line += f"\n  WARNING: only {mb(free)} free there; the study stops cleanly when the disk is nearly full"
    return line


def is_out_of_space(err: BaseException) -> bool:
    """An OSError of a full, over-quota or read-only disk, or SQLite's "disk is full" (Optuna's
    storage wraps it), anywhere in the exception's chain."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in SPACE_ERRNOS:
            return True
        if "disk is full" in str(err) or "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def out_of_space_line(uri: str, err: BaseException | None = None, reserve: int | None = None) -> str:
    free = free_bytes(uri)
    where = f"{mb(free)} free" if free is not None else "no room"
    what = f" ({type(err).__name__}: {err})" if err is not None else ""
    need = f", a checkpoint needs up to {mb(reserve)}" if reserve else ""
    return (
        f"out of space under {uri}: {where}{need}{what}. The study stopped; the rows written so far are intact. "
        f"Make room there, then run the same command with --resume"
    )


class DiskWatch:
    """Watches the free space under the results every ``period_s`` seconds from a thread;
    below ``reserve`` bytes it calls ``stop`` once (Tune's graceful stop: the trials resume
    from their last checkpoints) and keeps the free space it saw in ``short``."""

    def __init__(self, uri: str, reserve: int, stop: Callable[[], object], period_s: float = 2.0) -> None:
        self.uri, self.reserve, self.stop, self.period_s = uri, reserve, stop, period_s
        self.short: int | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="disk-watch", daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(self.period_s):
            free = free_bytes(self.uri)
            if free is not None and free < self.reserve:
                self.short = free
                self.stop()
                return

    def __enter__(self) -> DiskWatch:
        if not storage.is_uri(self.uri):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
