"""Bad input inside a trial: every rank agrees, the trial ends once with a record that names
the file and the ranks, and a corrupt training image is skipped with a warning and a count."""

import dataclasses
import json
import os
import shutil
import tempfile

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from analysis import load_results
from study.spec.presets import SMOKE
from study.spec.resolved import base_trial
from study.spec.study_config import Arm
from tests.conftest import MemoryCheckpoints, write_coco_fixture
from trainables.contract.config_io import from_dict
from trainables.contract.errors import InputError
from trainables.contract.trial_config import PretrainSpec, TrialConfig
from trainables.engine.trial import run_trial
from trainables.pretraining.pretrain import ensure_pretrained
from trainables.runtime import AgreedInputError, Session, agree_on_input


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def _cfg(tmp_path, init="scratch", **changes):
    d = base_trial(
        SMOKE,
        Arm(init, 1.0, "tiny"),
        results_uri=str(tmp_path / "results"),
        code_version="test",
        pretrained={"tiny": (str(tmp_path / "nope.pth"), None)},
    )
    return from_dict(TrialConfig, {**d, "trial_id": "t1", **changes})


def _coco_cfg(tmp_path, **changes):
    """A smoke trial on the 4-image COCO fixture (2 trainable images: one worker, one image each)."""
    for split in ("train", "search"):
        write_coco_fixture(tmp_path / split)
    data = {**dataclasses.asdict(SMOKE.data), "source": "coco"}
    for split in ("train", "search"):
        data[f"{split}_images"] = str(tmp_path / split)
        data[f"{split}_annotations"] = str(tmp_path / split / "instances.json")
    solver = {**dataclasses.asdict(SMOKE.solver), "ims_per_worker": 1}
    return _cfg(tmp_path, data=data, solver=solver, num_workers=1, **changes)


def _record(tmp_path):
    failures = tmp_path / "results" / "failures"
    return json.loads((failures / "t1.json").read_text()), (failures / "t1.log").read_text()


def test_missing_pretrained_weights_end_the_trial_with_a_record(tmp_path):
    logs = []
    out = run_trial(_cfg(tmp_path, init="pretrained"), MemoryCheckpoints().session(log=logs.append))
    error = out["input_error"]
    assert error["type"] == "MissingInputError" and error["field"] == "pretrained_weights"
    assert str(tmp_path / "nope.pth") in error["message"] and error["ranks"] == [0]
    record, log = _record(tmp_path)
    assert record == error and "Traceback" in log and "nope.pth" in log
    assert [m for m in logs if "bad input" in m] == [
        f"[t1] bad input on rank(s) 0 (node {error['nodes'][0]}), the trial ends without a retry: "
        f"MissingInputError: {error['message']}"
    ]
    assert not (tmp_path / "results" / "metrics").exists()


def test_image_listed_but_missing_is_found_before_training(tmp_path):
    cfg = _coco_cfg(tmp_path)
    os.remove(tmp_path / "train" / "000000000002.jpg")
    out = run_trial(cfg, MemoryCheckpoints().session())
    assert out["input_error"]["field"] == "data.train_images"
    assert "image 2 listed in" in out["input_error"]["message"] and "000000000002.jpg" in out["input_error"]["message"]


def test_unreadable_search_image_fails_the_trial_at_its_evaluation_keeping_earlier_rows(tmp_path):
    cfg = _coco_cfg(tmp_path, schedule=2.0, schedules=(1.0, 2.0), eval_period=6)
    val_image = tmp_path / "search" / "000000000003.jpg"

    def log(message):  # the image breaks right after the trial's first result (the 1x final)
        if "1x final" in message:
            val_image.write_bytes(b"\xff\xd8 truncated")

    out = run_trial(cfg, MemoryCheckpoints().session(log=log))
    error = out["input_error"]
    assert error["field"] == "data.search_images"
    assert error["message"].startswith("image 3 (") and "000000000003.jpg" in error["message"]
    assert "cannot be decoded" in error["message"]
    assert error["message"].endswith("the evaluation needs every image of the search split")
    rows = load_results(tmp_path / "results")  # what was written before stays readable
    assert rows[["phase", "schedule", "iteration"]].values.tolist() == [["final", 1.0, 9]]


def test_truncated_training_image_is_skipped_counted_and_warned_once(tmp_path):
    cfg = _coco_cfg(tmp_path, schedule=1.0, schedules=())
    path = tmp_path / "train" / "000000000001.jpg"
    path.write_bytes(path.read_bytes()[:300])
    logs = []
    out = run_trial(cfg, MemoryCheckpoints().session(log=logs.append))
    assert "input_error" not in out and out["status"] == "completed"
    # 9 iterations of 1 image over 2 images: image 1 comes up about half the time.
    rows = pd.read_parquet(tmp_path / "results" / "metrics")
    assert rows["skipped_images"].iloc[-1] >= 2
    warnings = [m for m in logs if "training image skipped" in m]
    assert len(warnings) == 1 and "image 1 (" in warnings[0] and "cannot be decoded" in warnings[0]


def _agree_worker(rank, init_file, queue):
    """Both cases in one process group: rank 1 finds bad input, then no rank does."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    session = Session(rank=rank, world_size=2, device=torch.device("cpu"), report=None, load_checkpoint=None)
    for failing_rank in (1, None):

        def setup(failing_rank=failing_rank):
            if rank == failing_rank:
                raise InputError(f"rank {rank} cannot read /data/x.json", "data.train_annotations")
            return rank

        try:
            queue.put((failing_rank, rank, "value", agree_on_input(session, setup)))
        except AgreedInputError as err:
            queue.put((failing_rank, rank, "error", [(e["rank"], e["message"], e["field"]) for e in err.errors]))
    dist.destroy_process_group()


def test_ranks_agree_on_bad_input_that_one_rank_found():
    """A rank that finds bad input never leaves the others waiting in a collective."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        procs = [ctx.Process(target=_agree_worker, args=(r, os.path.join(tmp, "init"), queue)) for r in range(2)]
        for p in procs:
            p.start()
        got = [queue.get(timeout=60) for _ in range(4)]
        for p in procs:
            p.join(timeout=30)
    for failing_rank, expected in ((1, "error"), (None, "value")):
        mine = sorted(g[1:] for g in got if g[0] == failing_rank)
        assert [kind for _, kind, _ in mine] == [expected, expected]
        if expected == "error":
            assert mine[0][2] == mine[1][2] == [(1, "rank 1 cannot read /data/x.json", "data.train_annotations")]
        else:
            assert [value for _, _, value in mine] == [0, 1]


def test_a_value_error_while_setting_up_is_not_retried_either(tmp_path):
    """Schedules whose branches collide raise ValueError before anything trains: bad input."""
    out = run_trial(_cfg(tmp_path, schedule=1.01, schedules=(1.0, 1.01)), MemoryCheckpoints().session())
    assert out["input_error"]["type"] == "ValueError" and "fork at the same iteration" in out["input_error"]["message"]


def test_no_readable_training_image_fails_every_rank_in_the_step(tmp_path):
    """When a rank finds no readable image to stand in, the step's all-reduce tells every
    rank, and the trial ends on bad input instead of one rank raising alone."""
    cfg = _coco_cfg(tmp_path, schedule=1.0, schedules=())
    for image_id in (1, 2):
        (tmp_path / "train" / f"{image_id:012d}.jpg").write_bytes(b"\xff\xd8 truncated")
    error = run_trial(cfg, MemoryCheckpoints().session())["input_error"]
    assert error["field"] == "data.train_images" and "11 training images in a row cannot be read" in error["message"]


def test_a_fixed_input_clears_the_record_of_the_bad_one(tmp_path):
    cfg = _cfg(tmp_path, init="pretrained")
    assert "input_error" in run_trial(cfg, MemoryCheckpoints().session())
    assert (tmp_path / "results" / "failures" / "t1.json").exists()
    spec = PretrainSpec(iterations=3, batch_size=8)
    shutil.copy(ensure_pretrained(SMOKE.models["tiny"], spec).path, tmp_path / "nope.pth")
    assert run_trial(dataclasses.replace(cfg, schedule=1.0, schedules=()), MemoryCheckpoints().session())["status"] == (
        "completed"
    )
    assert not list((tmp_path / "results" / "failures").iterdir())
