"""Faults of the environment at unit size: the study folder's lock, interrupts, a full disk."""

import dataclasses
import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.guards import disk
from study.guards.driver_lock import DriverLock, StudyLocked, takeover_line
from study.guards.interrupts import Interrupted, Interrupts, resume_line
from study.spec.presets import SMOKE, TOY

ROOT = Path(__file__).resolve().parents[2]


def test_a_second_driver_is_refused_and_a_dead_ones_lock_taken_over(tmp_path):
    folder = tmp_path / "study"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from study.guards.driver_lock import DriverLock; "
            f"lock = DriverLock({str(folder)!r}); lock.acquire(); print('held', flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.time()
        with pytest.raises(StudyLocked, match=rf"is in use by another driver: host .+, pid {holder.pid}, since 20"):
            DriverLock(str(folder)).acquire()
        assert time.time() - start < 1  # refused at once, not after a wait
    finally:
        holder.kill()  # dies without releasing: the kernel drops the lock, its note stays
        holder.wait()
    assert json.loads((folder / ".driver.json").read_text())["pid"] == holder.pid
    with DriverLock(str(folder)) as lock:
        line = takeover_line(lock)
        assert line.startswith(f"note: took over {folder} from a driver that is gone") and str(holder.pid) in line
        assert json.loads((folder / ".driver.json").read_text())["pid"] == os.getpid()
    assert not (folder / ".driver.json").exists()  # released: no note left
    with DriverLock(str(folder)) as lock:
        assert takeover_line(lock) is None


def test_a_signal_outside_tune_raises_at_once_and_inside_asks_tune_to_stop():
    interrupts = Interrupts()
    interrupts.install()
    try:
        with pytest.raises(Interrupted) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert stop.value.signum == signal.SIGTERM and interrupts.exit_status == 143

        interrupts = Interrupts()
        interrupts.install()
        stops = []
        previous = signal.signal(signal.SIGUSR1, lambda *_: stops.append(1))  # Tune's, inside its loop
        try:
            with pytest.raises(Interrupted), interrupts.tune_running():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
                assert stops == [1]  # Tune was asked to stop; nothing raised inside its loop
            with pytest.raises(Interrupted):  # the second one ends at once
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
        finally:
            signal.signal(signal.SIGUSR1, previous)
        assert interrupts.exit_status == 130
    finally:
        interrupts.uninstall()
    assert resume_line("/r/toy", signal.SIGHUP).splitlines()[-1] == (
        "  python study/run.py --results /r --name toy --resume"
    )


@pytest.mark.parametrize("name", ["TINY_GN", "R50_GN", "R101_GN_CAFFE2", "R50_SYNCBN"])
def test_the_weights_counted_without_torch_match_the_built_model(name):
    import torch

    from trainables.model import zoo
    from trainables.model.mask_rcnn import build_model

    base, classes = getattr(zoo, name), (5 if name == "TINY_GN" else 80)
    frozen = dataclasses.replace(base, norm="frozenbn", box_head_convs=0)  # the 2fc box head too
    for cfg in (base, frozen):
        with torch.device("meta"):
            model = build_model(cfg, classes, min_size=(800,), max_size=1333)
        built = sum(p.numel() for p in model.parameters())
        assert abs(disk.model_params(cfg, classes) - built) < 0.01 * built


def test_the_plan_states_the_disk_a_study_needs(tmp_path):
    need = disk.need(SMOKE, trials=4, iterations=100)
    # The tiny model: about 1.07M parameters, 4-byte weights and momentum, twice in a cooldown.
    assert 16 * 1.0e6 < need.checkpoint < 16 * 1.2e6 + 2**20
    assert need.total > 4 * disk.KEEP * need.checkpoint
    line = disk.plan_line(need, str(tmp_path / "new" / "study"))
    assert "4 trials x 2 checkpoints" in line and "WARNING" not in line
    assert "WARNING: only" in disk.plan_line(disk.DiskNeed(2**50, 1, 1), str(tmp_path))
    assert disk.need(TOY, trials=4, iterations=1).checkpoint == need.checkpoint  # the same model


def test_a_full_disk_is_told_as_such_wherever_it_is_met(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device")
    assert disk.is_out_of_space(full)
    wrapped = RuntimeError("Optuna storage error")
    wrapped.__cause__ = sqlite3.OperationalError("database or disk is full")
    assert disk.is_out_of_space(wrapped)
    assert disk.is_out_of_space(OSError(errno.EROFS, "Read-only file system"))
    assert not disk.is_out_of_space(OSError(errno.ENOENT, "No such file"))
    line = disk.out_of_space_line(str(tmp_path), full)
    assert line.startswith(f"out of space under {tmp_path}: ") and "No space left on device" in line
    assert line.endswith("run the same command with --resume")


def test_the_disk_watch_stops_once_below_its_reserve(tmp_path):
    stops = []
    free = disk.free_bytes(str(tmp_path))
    with disk.DiskWatch(str(tmp_path), free * 2, lambda: stops.append(1), period_s=0.05) as watch:
        time.sleep(0.5)
    assert stops == [1] and watch.short is not None and watch.short <= free * 1.01
    with disk.DiskWatch(str(tmp_path), 1, lambda: stops.append(1), period_s=0.05) as watch:
        time.sleep(0.2)
    assert stops == [1] and watch.short is None
