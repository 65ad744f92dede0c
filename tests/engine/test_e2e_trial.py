"""One trial through the real stack: Ray Tune -> Ray Train (2 DDP workers, gloo) -> Parquet.

Marked e2e: each test starts Train workers (tens of seconds on 2 cores).
"""

import dataclasses
import math
import shutil

import optuna
import pandas as pd
import pytest
import ray

from analysis import final_rows, load_results
from study.cli import main
from study.hpo import tuning
from study.spec.presets import SMOKE, SMOKE_KEYPOINTS
from study.spec.resolved import base_trial, resolve
from study.spec.study_config import arms as study_arms
from tests.ray_output import driver_lines, forwarded_lines
from trainables.contract.rows import AP_KEYS, COLUMNS, KEYPOINT_KEYS
from trainables.engine.ray_entry import TrialInputError
from trainables.pretraining.pretrain import ensure_pretrained

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local_ray():
    tuning.start_ray(None, num_cpus=2)
    yield
    ray.shutdown()


def test_a_lost_worker_is_restarted_and_bad_input_fails_once_then_resume_continues(local_ray, tmp_path, capfd):
    """Two faults of different kinds in one study of one trial per arm:
    - a worker of the scratch trial dies inside a cooldown: Ray Train restarts the worker
      group, which resumes from the checkpoint there, and the trial completes;
    - the pretrained arm's weights are missing on the workers (the driver could not check
      them): that trial fails once, without a retry, and the summary names the failure;
      after the file appears, --resume finishes the failed trial.
    The study is smoke-keypoints: the keypoint task's rows come through Ray Tune and Ray
    Train too. (That a closed arm gets no further trial is tested on the searcher,
    tests/study/test_search.py.)"""
    uri = str(tmp_path / "S")
    study = dataclasses.replace(SMOKE_KEYPOINTS, num_samples=1)
    weights = tmp_path / "weights" / "tiny.pth"
    arms = {
        arm.name: base_trial(study, arm, results_uri=uri, code_version="test", pretrained={"tiny": (str(weights), 96)})
        for arm in study_arms(study)
    }
    # The scratch recipe's last rank raises once at iteration 7, inside the 1x branch (3 -> 9)
    # after its checkpoint at 6; Train restarts the worker group (FailureConfig(max_failures=2))
    # and resumes in the branch, with the trunk saved at the fork in the checkpoint.
    arms["scratch-tiny-f1"] = {**arms["scratch-tiny-f1"], "fail_at_iteration": 7}
    grid = tuning.run_study(resolve(study), arms, 1, uri, max_concurrent=1, resume=False)
    scratch = pd.read_parquet(f"{uri}/metrics").query("arm == 'scratch-tiny-f1'").sort_values("cost_iterations")
    assert scratch["phase"].tolist() == ["final", "trunk", "trunk", "final"]
    assert scratch["iteration"].tolist() == [9, 6, 12, 18] and scratch["cost_iterations"].tolist() == [9, 12, 18, 24]
    assert scratch["status"].tolist() == ["completed", "running", "running", "completed"]
    assert (scratch["resumed_from"] == 6).all()
    # The rows' contract, whole and finite, from 2 DDP workers of 2 images each.
    assert set(COLUMNS) <= set(scratch.columns) and scratch[list(AP_KEYS)].map(math.isfinite).all().all()
    assert scratch[["loss_keypoint", *KEYPOINT_KEYS]].map(math.isfinite).all().all()
    assert scratch.query("phase == 'final'")["test_keypoints_AP"].notna().all()
    assert (scratch["num_workers"] == 2).all() and (scratch["batch_size"] == 4).all()
    assert scratch["code_version"].notna().all() and (scratch["init"] == "scratch").all()
    assert len(list((tmp_path / "S" / "faults").iterdir())) == 1
    failed = tuning.failed_trials(grid, uri)
    assert len(failed) == 1 and failed[0].arm == "pretrained-tiny-f1"
    assert failed[0].error_type == "MissingInputError" and str(weights) in failed[0].message
    line = failed[0].line()
    assert line.startswith(f"trial {failed[0].trial_id} (pretrained-tiny-f1) failed: MissingInputError: ")
    log = (tmp_path / "S" / "failures" / f"{failed[0].trial_id}.log").read_text()
    # Both ranks hit it, told once; one Train run, no restart (no checkpoint, no rows).
    assert log.count("Traceback") == 1 and "rank(s) 0, 1" in log
    assert not list((tmp_path / "S" / "train").glob(f"train-{failed[0].trial_id}/checkpoint_*"))
    df = load_results(uri)
    assert set(df["arm"]) == {"scratch-tiny-f1"} and df["trial_id"].nunique() == 1  # scratch's trial
    assert len(grid) == 2
    errors = [r for r in grid if r.error]
    assert len(errors) == 1 and isinstance(errors[0].error, TrialInputError)
    out, err = capfd.readouterr()
    # Told once by the workers (both ranks, one line, no traceback: a forwarded traceback would
    # name the error again). The driver's own lines may hold Tune's log of it, with the one
    # traceback; the injected worker failure's forwarded traceback is a different error.
    said = out + err
    assert said.count("bad input on rank(s) 0, 1") == 1
    assert sum("MissingInputError" in line for line in forwarded_lines(said)) == 1
    assert "\n".join(driver_lines(said)).count("Traceback") <= 1

    # Fixed: the weights appear where the arm's config says; --resume finishes the failed trial.
    weights.parent.mkdir()
    shutil.copy(ensure_pretrained(study.models["tiny"], study.pretrain).path, weights)
    grid = tuning.run_study(resolve(study), arms, 1, uri, max_concurrent=1, resume=True)
    assert not tuning.failed_trials(grid, uri)
    assert not list((tmp_path / "S" / "failures").iterdir())  # the record went with the bad input
    df = load_results(uri)
    pretrained = final_rows(df).query("arm == 'pretrained-tiny-f1'")
    assert pretrained["trial_id"].nunique() == 1 and (pretrained["pretrain_images_seen"] == 96).all()
    resumed = pretrained[pretrained["trial_id"] == failed[0].trial_id]
    assert resumed["schedule"].tolist() == sorted(SMOKE.search.schedule)[: len(resumed)] and len(resumed)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'S' / 'optuna.db'}")
    trials = optuna.load_study(study_name="pretrained-tiny-f1", storage=storage).get_trials(deepcopy=False)
    assert [t.state.name for t in trials].count("FAIL") == 1
    joined = [t for t in trials if t.user_attrs.get("tune_trial") == failed[0].trial_id and t.state.name == "COMPLETE"]
    assert sorted(t.params["schedule"] for t in joined) == resumed["schedule"].tolist()


def test_trial_command_with_bad_input_on_the_workers_exits_non_zero(local_ray, tmp_path, capsys):
    """On a cluster the driver leaves a path it cannot see to the trial: the trial fails once
    and --trial exits 1 with the summary line."""
    address = ray.get_runtime_context().gcs_address
    code = main(
        [
            "--preset",
            "smoke",
            "--trial",
            "init=pretrained",
            "--results",
            str(tmp_path),
            "--name",
            "T",
            "--address",
            address,
            "--set",
            'pretrained_weights={"tiny": "/cluster/only/tiny.pth"}',
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert "note: pretrained weights for model tiny not found: /cluster/only/tiny.pth on this machine" in out
    assert "the trials check it on the cluster's nodes" in out
    lines = err.splitlines()  # Ray's own log lines may come first
    summary = lines.index("1 trial(s) failed:")
    assert (
        "(pretrained-tiny-f1) failed: MissingInputError: pretrained weights not found: /cluster/only/tiny.pth"
        in lines[summary + 1]
        and f"[log: {tmp_path / 'T' / 'failures'}" in lines[summary + 1]
    )


def test_wandb_offline_logs_each_trial_through_tunes_callback(local_ray, tmp_path, monkeypatch):
    """--tracker wandb with WANDB_MODE=offline: Tune's W&B callback (study/hpo/trackers.py)
    writes a run folder per trial in the study folder, with what Tune saw."""
    from ray import tune

    from study.hpo import trackers

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    uri = str(tmp_path / "W")

    def fn(config):
        for iteration in (3, 6):
            tune.report({"bbox_AP": config["lr"] * iteration, "iteration": iteration, "timesteps_total": iteration})

    grid = tune.Tuner(
        fn,
        param_space={"lr": tune.grid_search([0.01, 0.02])},
        run_config=tuning.run_config(uri, trackers.callbacks(("wandb",), uri)),
    ).fit()
    assert not [r for r in grid if r.error]
    runs = sorted((tmp_path / "W" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(list(run.glob("run-*.wandb")) for run in runs), runs
    logged = [next(run.glob("run-*.wandb")).read_bytes() for run in runs]
    assert all(b"bbox_AP" in blob and b"rethink-pretraining" in blob for blob in logged)  # metric, project
