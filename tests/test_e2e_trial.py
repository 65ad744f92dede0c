"""One trial through the real stack: Ray Tune -> Ray Train (2 DDP workers, gloo) -> Parquet.

Marked e2e: each test starts Train workers (tens of seconds on 2 cores).
"""

import math

import pandas as pd
import pytest
import ray

from study import tuning
from study.cli import main
from study.config import Arm, base_trial
from study.presets import SMOKE
from trainables.coco_eval import AP_KEYS
from trainables.results import COLUMNS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local_ray():
    tuning.start_ray(None, num_cpus=2)
    yield
    ray.shutdown()


@pytest.mark.parametrize("init", ["scratch", "pretrained"])
def test_trial_command_writes_rows(local_ray, tmp_path, init):
    code = main(["--preset", "smoke", "--trial", f"init={init},lr=0.02,weight_decay=0.0001,schedule=2",
                 "--results", str(tmp_path), "--name", "S"])
    assert code == 0
    df = pd.read_parquet(tmp_path / "S" / "metrics").sort_values("cost_iterations")
    assert set(COLUMNS) <= set(df.columns)
    # The 1x branch (3 -> 9), the trunk's rows at 6 and 12, the 2x cooldown (12 -> 18).
    assert df["phase"].tolist() == ["final", "trunk", "trunk", "final"]
    assert df["iteration"].tolist() == [9, 6, 12, 18] and df["schedule"].tolist() == [1.0, 2.0, 2.0, 2.0]
    assert df[list(AP_KEYS)].map(math.isfinite).all().all()
    assert (df["init"] == init).all() and (df["num_workers"] == 2).all() and (df["batch_size"] == 4).all()
    assert df["status"].tolist() == ["completed", "running", "running", "completed"]
    assert df["trial_id"].nunique() == 1 and df["code_version"].notna().all()
    if init == "pretrained":
        assert (df["pretrain_images_seen"] > 0).all()
    assert (tmp_path / "S" / "study.json").exists()


def test_worker_failure_resumes_from_checkpoint(local_ray, tmp_path):
    uri = str(tmp_path / "F")
    arm = Arm("scratch", 1.0, "tiny")
    base = base_trial(SMOKE, arm, results_uri=uri, code_version="test", pretrained={})
    # The last rank raises once at iteration 7, inside the 1x branch (3 -> 9) after its
    # checkpoint at 6; Train restarts the worker group (FailureConfig(max_failures=2)) and
    # resumes in the branch, with the trunk saved at the fork in the checkpoint.
    arms = {arm.name: {**base, "fail_at_iteration": 7}}
    grid = tuning.run_single_trial(arms, {"arm": arm.name, "lr": 0.02, "weight_decay": 1e-4, "schedule": 2.0},
                                   uri, "bbox_AP", resume=False)
    assert grid[0].error is None
    df = pd.read_parquet(f"{uri}/metrics").sort_values("cost_iterations")
    assert df["phase"].tolist() == ["final", "trunk", "trunk", "final"]
    assert df["iteration"].tolist() == [9, 6, 12, 18] and df["cost_iterations"].tolist() == [9, 12, 18, 24]
    assert df["status"].tolist() == ["completed", "running", "running", "completed"]
    assert (df["resumed_from"] == 6).all()
    assert len(list((tmp_path / "F" / "faults").iterdir())) == 1

