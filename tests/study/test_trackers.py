"""--tracker: the callbacks Tune gets, and a tracker whose package is missing refused before Ray."""

import sys

import pytest

from study.cli import main
from study.hpo import trackers


def test_a_tracker_whose_package_is_missing_is_refused_before_ray(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "aim", None)  # as if not installed: import raises
    with pytest.raises(SystemExit) as stop:
        main(["--preset", "smoke", "--results", str(tmp_path), "--tracker", "aim"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--tracker aim:" in err and "pip install" in err


def test_each_tracker_is_tunes_own_callback_pointed_at_the_study(tmp_path, monkeypatch):
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.air.integrations.wandb import WandbLoggerCallback

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    folder = str(tmp_path / "mine")
    mlflow_cb, wandb_cb = trackers.callbacks(("mlflow", "wandb"), folder)
    assert isinstance(mlflow_cb, MLflowLoggerCallback) and isinstance(wandb_cb, WandbLoggerCallback)
    assert mlflow_cb.tracking_uri == f"sqlite:///{folder}/mlflow.db" and mlflow_cb.experiment_name == "mine"
    assert wandb_cb.group == "mine" and wandb_cb.kwargs == {"dir": folder, "mode": "offline"}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert trackers.callbacks(("mlflow",), "s3://b/studies/mine")[0].tracking_uri == "http://mlflow.example:5000"
