"""The training stream's loader workers live from one stream to the next (persistent_workers):
a branch's return to the trunk, an epoch and a restore ask for a new stream at any iteration,
and get the batches a straight run gets there, from the same worker processes."""

import multiprocessing

from study.spec.presets import SMOKE
from study.spec.resolved import base_trial
from study.spec.study_config import Arm
from tests.conftest import MemoryCheckpoints
from trainables.contract.config_io import from_dict
from trainables.contract.trial_config import TrialConfig
from trainables.data.dataset import build_datasets
from trainables.data.splits import resolve_data
from trainables.engine.trial import TrainingBatches


def _batches(tmp_path, workers):
    d = base_trial(SMOKE, Arm("scratch", 1.0, "tiny"), results_uri=str(tmp_path), code_version="test", pretrained={})
    cfg = from_dict(TrialConfig, {**d, "trial_id": "t1", "data": {**d["data"], "loader_workers": workers}})
    train_set, _ = build_datasets(cfg, resolve_data(cfg.data))
    return TrainingBatches(cfg, MemoryCheckpoints().session(), train_set)


def _ids(batch):
    images, targets = batch
    return [t["image_id"] for t in targets], [float(i.float().sum()) for i in images]


def test_persistent_workers_restart_the_stream_at_any_iteration_in_the_same_processes(tmp_path):
    batches = _batches(tmp_path, workers=2)
    assert batches.loader.persistent_workers and not batches.loader.pin_memory  # pinned on a GPU only
    per_epoch = batches.iterations_per_epoch
    stream = batches(0)
    straight = [_ids(next(stream)) for _ in range(per_epoch + 3)]  # into the second epoch
    workers = {p.pid for p in multiprocessing.active_children()}
    assert len(workers) == 2
    # A branch ends and the trunk goes on from its fork (inside an epoch, and across one).
    for start in (2, per_epoch - 1, per_epoch + 1):
        again = batches(start)
        assert [_ids(next(again)) for _ in range(2)] == straight[start : start + 2], start
    assert {p.pid for p in multiprocessing.active_children()} == workers  # no worker forked again
    # The same batches as the loader without worker processes.
    plain = _batches(tmp_path, workers=0)
    assert not plain.loader.persistent_workers
    stream0 = plain(0)
    assert [_ids(next(stream0)) for _ in range(per_epoch + 3)] == straight
