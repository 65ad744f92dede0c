"""The training loop in one process: rows, exact resume, divergence, pretrained init."""

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

from study.spec.presets import SMOKE, SMOKE_KEYPOINTS
from study.spec.resolved import base_trial
from study.spec.study_config import Arm
from tests.conftest import MemoryCheckpoints
from trainables.contract.config_io import from_dict
from trainables.contract.rows import AP_KEYS, KEYPOINT_KEYS, LOSS_KEYS
from trainables.contract.trial_config import PretrainSpec, TrialConfig
from trainables.engine.trial import InjectedFailure, run_trial
from trainables.pretraining.pretrain import ensure_pretrained


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def _cfg(tmp_path, init="scratch", group_by_aspect=False, study=SMOKE, loader_workers=0, **changes):
    pretrained = {}
    if init == "pretrained":
        p = ensure_pretrained(study.models["tiny"], PretrainSpec(iterations=3, batch_size=8))
        pretrained = {"tiny": (str(p.path), p.images_seen)}
    d = base_trial(study, Arm(init, 1.0, "tiny"), results_uri=str(tmp_path), code_version="test", pretrained=pretrained)
    d["data"] = {**d["data"], "group_by_aspect": group_by_aspect, "loader_workers": loader_workers}
    return from_dict(TrialConfig, {**d, "trial_id": f"trial-{init}", **changes})


def _rows(folder):
    return pd.read_parquet(folder / "metrics").sort_values("cost_iterations").reset_index(drop=True)


def test_rows_of_a_trunk_and_its_branches(tmp_path):
    # smoke: 1x = 9 iterations; 1x forks at 3 and ends at 9, 2x forks at 12 and ends at 18.
    store = MemoryCheckpoints()
    run_trial(_cfg(tmp_path, schedule=2.0, schedules=(1.0, 2.0), eval_period=6), store.session())
    df = _rows(tmp_path)
    assert df["phase"].tolist() == ["final", "trunk", "trunk", "final"]
    assert df["schedule"].tolist() == [1.0, 2.0, 2.0, 2.0] and (df["trunk_schedule"] == 2.0).all()
    # Trunk rows at every 6th trunk iteration up to the last fork (12, still at the peak LR).
    assert df["iteration"].tolist() == [9, 6, 12, 18]
    # The 1x cooldown (3 -> 9) costs 6 iterations, then the trunk goes on from 3.
    assert df["cost_iterations"].tolist() == [9, 12, 18, 24] and df["cost_images"].tolist() == [36, 48, 72, 96]
    assert df["images_seen"].tolist() == [36, 24, 48, 72] and df["max_iterations"].tolist() == [9, 18, 18, 18]
    assert df["status"].tolist() == ["completed", "running", "running", "completed"]
    assert df[list(AP_KEYS)].notna().all().all() and df["loss"].notna().all()
    assert df[["loss_keypoint", *KEYPOINT_KEYS]].isna().all().all()  # not a keypoint task
    assert df["pretrain_images_seen"].isna().all() and df["resumed_from"].isna().all()
    # Reports: a checkpoint inside the 1x cooldown at 6, the 1x final, the trunk rows, the 2x final.
    assert [(r["phase"], r["iteration"]) for r in store.reports] == [
        ("checkpoint", 6),
        ("final", 9),
        ("trunk", 6),
        ("trunk", 12),
        ("final", 18),
    ]
    assert store.state["position"]["finished"] and store.state["iteration"] == 18
    subset = json.loads(next((tmp_path / "subsets").iterdir()).read_text())
    assert subset["train_images"] == 24 and len(subset["image_ids"]) == 24


def test_each_branch_equals_an_independent_run_of_its_schedule(tmp_path):
    schedules = (1.0, 2.0, 3.0)
    run_trial(_cfg(tmp_path / "all", schedule=3.0, schedules=schedules), MemoryCheckpoints().session())
    finals = _rows(tmp_path / "all").query("phase == 'final'").set_index("schedule")
    assert finals.index.tolist() == list(schedules)
    columns = ["iteration", "images_seen", "loss", *LOSS_KEYS, *AP_KEYS, "lr_now"]
    for s in schedules:
        run_trial(_cfg(tmp_path / f"{s:g}x", schedule=s, schedules=()), MemoryCheckpoints().session())
        alone = _rows(tmp_path / f"{s:g}x").query("phase == 'final'").iloc[0]
        # Bit-identical, not close: same weights, momentum, RNG and data order at the fork.
        assert finals.loc[s, columns].tolist() == alone[columns].tolist(), s


def _straight_and_broken(tmp_path, fail_at, **kwargs):
    """A trial run through, and the same trial stopped by an injected failure at ``fail_at``."""
    straight = MemoryCheckpoints()
    run_trial(_cfg(tmp_path / "a", **kwargs), straight.session())
    broken = MemoryCheckpoints()
    cfg = _cfg(tmp_path / "b", fail_at_iteration=fail_at, **kwargs)
    with pytest.raises(InjectedFailure):
        run_trial(cfg, broken.session())
    return straight, broken, cfg


def _same_weights(straight, broken):
    # Same data order, flips, proposals and weights as a run that never stopped.
    for key, value in straight.state["model"].items():
        assert torch.equal(value, broken.state["model"][key]), key


@pytest.mark.parametrize(
    "grouped, workers",
    [(False, 0), (True, 2)],
    ids=["random-batches", "aspect-grouped-with-persistent-workers"],
)
def test_resume_inside_a_branch_continues_at_the_exact_iteration(tmp_path, grouped, workers):
    # Iteration 7 comes first inside the 1x cooldown (3 -> 9), after its checkpoint at 6.
    # Grouped batches (the generated images are both landscape and portrait) from two
    # persistent loader workers (kept across the branch's return and the evaluations) resume alike.
    straight, broken, cfg = _straight_and_broken(
        tmp_path, 7, schedule=2.0, schedules=(1.0, 2.0), eval_period=2, group_by_aspect=grouped, loader_workers=workers
    )
    assert cfg.data.loader_workers == workers
    assert cfg.data.group_by_aspect == grouped
    assert broken.state["position"]["in_branch"] and broken.state["iteration"] == 6
    assert broken.state["fork"] is not None
    lines = []
    run_trial(cfg, broken.session(log=lines.append))
    assert any("resumed from the checkpoint at iteration 6 (1x cooldown)" in line for line in lines)
    _same_weights(straight, broken)
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    columns = ["phase", "schedule", "iteration", "cost_iterations", "loss", *AP_KEYS, "status"]
    assert a[columns].equals(b[columns])
    assert (
        b["resumed_from"].isna().tolist() == [True] + [False] * (len(b) - 1) and (b["resumed_from"].dropna() == 6).all()
    )


def test_resume_on_the_trunk_after_a_branch(tmp_path):
    # Iteration 10 is on the trunk after the 1x branch (trunk 3 -> 12), whose final report
    # carried the trunk at its fork as the checkpoint.
    straight, broken, cfg = _straight_and_broken(tmp_path, 10, schedule=2.0, schedules=(1.0, 2.0), eval_period=0)
    assert not broken.state["position"]["in_branch"] and broken.state["iteration"] == 3
    assert broken.state["position"]["branch"] == 1
    run_trial(cfg, broken.session())
    _same_weights(straight, broken)
    columns = ["phase", "schedule", "iteration", "cost_iterations", "loss", *AP_KEYS]
    assert _rows(tmp_path / "a")[columns].equals(_rows(tmp_path / "b")[columns])


def test_divergence_ends_cleanly_with_zero_ap(tmp_path):
    cfg = _cfg(tmp_path, lr=1e6, solver=dataclasses.replace(SMOKE.solver, clip_grad_norm=None, warmup_iters=0))
    store = MemoryCheckpoints()
    last = run_trial(cfg, store.session())
    assert last["status"] == "diverged" and all(last[k] == 0.0 for k in AP_KEYS)
    assert not any(isinstance(v, float) and math.isnan(v) for v in last.values())
    df = pd.read_parquet(tmp_path / "metrics")
    assert df["status"].tolist() == ["diverged"] and (df["bbox_AP"] == 0.0).all()
    # Marked as the final result of the schedule it was heading for.
    assert df["phase"].tolist() == ["final"] and df["schedule"].tolist() == [1.0]
    assert df["iteration"].item() < 9


def test_a_pretrained_keypoint_trial_records_pretraining_and_keypoint_ap(tmp_path):
    """smoke-keypoints: the generated kites, Mask R-CNN with a keypoint head on the
    pretrained backbone; every row has the keypoint loss and keypoint AP (the test split's
    on finals), next to box and mask AP."""
    store = MemoryCheckpoints()
    run_trial(_cfg(tmp_path, init="pretrained", study=SMOKE_KEYPOINTS), store.session())
    df = pd.read_parquet(tmp_path / "metrics")
    assert (df["pretrain_images_seen"] == 24).all() and (df["init"] == "pretrained").all()
    assert df[["loss_keypoint", *KEYPOINT_KEYS, *AP_KEYS]].map(math.isfinite).all().all()
    assert (df["loss_keypoint"] > 0).all() and (df["loss"] > df["loss_keypoint"]).all()
    finals = df[df["phase"] == "final"]
    assert len(finals) and finals[[f"test_{k}" for k in KEYPOINT_KEYS]].notna().all().all()
    # Tune sees the objective (keypoint AP on the search split) and no test-split number.
    final = [r for r in store.reports if r["phase"] == "final"][-1]
    assert "keypoints_AP" in final and not any(k.startswith("test_") for k in final)


def test_extra_hooks_come_in_through_the_session(tmp_path):
    """A benchmark's timer is a hook added through the Session: it sees every step, after
    the trial's own hooks, through the trainer's public interface."""
    from trainables.engine.loop import HookBase

    seen = []

    class StepCounter(HookBase):
        def after_step(self, trainer):
            seen.append((trainer.position.iteration, trainer.position.cost))

    run_trial(_cfg(tmp_path, schedule=2.0, schedules=(1.0, 2.0)), MemoryCheckpoints().session(hooks=[StepCounter()]))
    costs = [c for _, c in seen]
    assert costs == list(range(1, len(costs) + 1)) and len(costs) > 0
