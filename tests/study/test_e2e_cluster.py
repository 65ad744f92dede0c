"""A study on two Ray nodes, with another Ray on the machine: placement groups of stopped
trials are freed. (The replicate phase runs through Ray in test_e2e_own_data.py.)

Marked e2e: it runs two Train runs (about a minute on 2 cores).
"""

import dataclasses
import subprocess
import sys
import time

import pytest
import ray

from analysis import load_results, trial_rows
from study.hpo import tuning
from study.spec.presets import SMOKE
from study.spec.resolved import base_trial, resolve
from study.spec.study_config import EarlyStopping, SearchSpace
from study.spec.study_config import arms as study_arms
from tests.study.test_e2e_study import _kill_session

pytestmark = pytest.mark.e2e


def _other_ray() -> subprocess.Popen:
    """Another user's local Ray on the same machine, started after the study's own: Ray's
    look-ups without an address ("the latest cluster") would find this one."""
    code = (
        "import ray, time; ray.init(address='local', num_cpus=1, include_dashboard=False); "
        "print('up', flush=True); time.sleep(900)"
    )
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert other.stdout.readline().strip() == "up"
    return other


def test_two_node_cluster_frees_placement_groups_of_stopped_trials(tmp_path):
    """With another Ray running on the machine too: no trial waits for ever on a placement
    group that a stopped trial left behind."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "resources": {"study_driver": 10}, "object_store_memory": 100 * 2**20},
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1, resources={"worker_node": 1}, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    other = _other_ray()
    try:
        tuning.start_ray(cluster.address, num_cpus=0)
        # One arm, schedules 1x and 2x, two trials: the 1x results are a rung, where a 2x
        # trial worse than the cutoff stops before training more trunk. With seed 11
        # Optuna's pick is a 2x trunk (lr 0.0014 against the recipe's 0.02) whose 1x result
        # falls below the rung's cutoff (every AP is 0: its higher loss decides).
        study = dataclasses.replace(
            SMOKE,
            axes=dataclasses.replace(SMOKE.axes, init=("scratch",)),
            num_samples=2,
            seed=11,
            solver=dataclasses.replace(SMOKE.solver, base_iters=12),
            eval_period=6,
            search=SearchSpace(lr=(0.001, 0.05), weight_decay=(1e-5, 1e-3), schedule=(1.0, 2.0)),
            # Smoke-size APs are 0 and the rung is decided by the loss's tie-break (at most
            # 1e-3): a seed noise far below it lets the rung act.
            early_stopping=EarlyStopping(enabled=True, reduction_factor=2, seed_std=1e-7),
        )
        uri = str(tmp_path / "C")
        arms = {}
        for arm in study_arms(study):
            base = base_trial(study, arm, results_uri=uri, code_version="test", pretrained={})
            arms[arm.name] = {**base, "worker_resources": {"worker_node": 1}}  # one DDP worker per node
        grid = tuning.run_study(resolve(study), arms, study.num_samples, uri, max_concurrent=1, resume=False)
        assert not [r for r in grid if r.error]
        df = load_results(uri)
        trials = trial_rows(df)
        assert len(trials) == 2
        stopped = trials[trials["trial_status"] == "stopped"]
        assert len(stopped) >= 1, df[["trial_id", "phase", "schedule", "iteration", "bbox_AP", "loss", "status"]]
        # Stopped at the 1x rung: no 2x result.
        assert not (
            (df["trial_id"].isin(stopped["trial_id"])) & (df["schedule"] == 2.0) & (df["phase"] == "final")
        ).any()
        deadline = time.time() + 30
        while time.time() < deadline:
            live = [pg for pg in ray.util.placement_group_table().values() if pg["state"] != "REMOVED"]
            if not live:
                break
            time.sleep(1)
        assert not live, live
    finally:
        _kill_session(other)
        ray.shutdown()
        cluster.shutdown()
