"""The training loop in one process: rows, exact resume, divergence, pretrained init."""

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

from study.config import Arm, base_trial
from study.presets import SMOKE
from trainables.coco_eval import AP_KEYS
from trainables.config import PretrainSpec, TrialConfig, from_dict
from trainables.engine import InjectedFailure, run_trial
from trainables.pretrain import ensure_pretrained
from tests.conftest import MemoryCheckpoints


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def _cfg(tmp_path, init="scratch", **changes):
    pretrained = {}
    if init == "pretrained":
        p = ensure_pretrained(SMOKE.models["tiny"], PretrainSpec(iterations=3, batch_size=8))
        pretrained = {"tiny": (str(p.path), p.images_seen)}
    d = base_trial(SMOKE, Arm(init, 1.0, "tiny"), results_uri=str(tmp_path), code_version="test",
                   pretrained=pretrained)
    return from_dict(TrialConfig, {**d, "trial_id": f"trial-{init}", **changes})


def test_rows_at_each_evaluation(tmp_path):
    store = MemoryCheckpoints()
    run_trial(_cfg(tmp_path), store.session())
    df = pd.read_parquet(tmp_path / "metrics").sort_values("iteration")
    assert df["iteration"].tolist() == [6, 9]  # eval_period 6 and the end of 1x = 9
    assert df["status"].tolist() == ["running", "completed"]
    assert df["images_seen"].tolist() == [24, 36] and df["train_images"].iloc[0] == 24
    assert df[list(AP_KEYS)].notna().all().all() and df["loss"].notna().all()
    assert df["pretrain_images_seen"].isna().all() and df["resumed_from"].isna().all()
    assert [r["iteration"] for r in store.reports] == [6, 9] and store.state["iteration"] == 9
    subset = json.loads(next((tmp_path / "subsets").iterdir()).read_text())
    assert subset["train_images"] == 24 and len(subset["image_ids"]) == 24


def test_resume_continues_at_the_exact_iteration(tmp_path):
    straight = MemoryCheckpoints()
    run_trial(_cfg(tmp_path / "a"), straight.session())
    broken = MemoryCheckpoints()
    cfg = _cfg(tmp_path / "b", fail_at_iteration=7)
    with pytest.raises(InjectedFailure):
        run_trial(cfg, broken.session())
    assert broken.state["iteration"] == 6
    run_trial(cfg, broken.session())
    # Same data order, flips, proposals and weights as a run that never stopped.
    for key, value in straight.state["model"].items():
        assert torch.equal(value, broken.state["model"][key]), key
    df = pd.read_parquet(tmp_path / "b" / "metrics").sort_values("iteration")
    assert df["iteration"].tolist() == [6, 9] and df["resumed_from"].tolist()[1] == 6
    assert df["status"].tolist() == ["running", "completed"]


def test_divergence_ends_cleanly_with_zero_ap(tmp_path):
    cfg = _cfg(tmp_path, lr=1e6, solver=dataclasses.replace(SMOKE.solver, clip_grad_norm=None, warmup_iters=0))
    store = MemoryCheckpoints()
    last = run_trial(cfg, store.session())
    assert last["status"] == "diverged" and all(last[k] == 0.0 for k in AP_KEYS)
    assert not any(isinstance(v, float) and math.isnan(v) for v in last.values())
    df = pd.read_parquet(tmp_path / "metrics")
    assert df["status"].tolist() == ["diverged"] and (df["bbox_AP"] == 0.0).all()
    assert df["iteration"].item() < 9


def test_pretrained_init_records_pretraining(tmp_path):
    store = MemoryCheckpoints()
    run_trial(_cfg(tmp_path, init="pretrained"), store.session())
    df = pd.read_parquet(tmp_path / "metrics")
    assert (df["pretrain_images_seen"] == 24).all() and (df["init"] == "pretrained").all()
