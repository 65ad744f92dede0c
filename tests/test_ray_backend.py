"""The trial's Train backend: torch stays out of the processes that only orchestrate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ray import cloudpickle

from trainables.ray_backend import TorchProcessGroupBackend, TorchProcessGroupConfig

REPO = Path(__file__).resolve().parent.parent


def test_trial_actor_and_controller_imports_leave_torch_out():
    # What the Tune trial actor imports to build a trainer, and what Train's controller does
    # with the config it receives (unpickle it, build its backend), in a fresh interpreter.
    blob = cloudpickle.dumps(TorchProcessGroupConfig(backend="gloo", timeout_s=60))
    code = (
        "import pickle, sys\n"
        "import trainables.ray_entry\n"
        "from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer\n"
        "from ray.tune.integration.ray_train import TuneReportCallback\n"
        "config = pickle.loads(sys.stdin.buffer.read())\n"
        "backend = config.backend_cls()\n"
        "print(config.to_dict(), type(backend).__name__)\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'trainables.engine') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=blob, capture_output=True, cwd=REPO, check=True, timeout=120
    ).stdout.decode()
    assert "{'backend': 'gloo', 'init_method': 'env', 'timeout_s': 60} TorchProcessGroupBackend" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_config_is_torch_config_for_the_env_init_method():
    config = TorchProcessGroupConfig()
    assert config.backend == "gloo" and config.backend_cls is TorchProcessGroupBackend
    # Like TorchConfig's backend: every worker sees its node's GPUs (NCCL needs the peers').
    assert TorchProcessGroupBackend.share_cuda_visible_devices
    assert config.framework.value == "torch"


def test_trial_trainer_leaves_out_ray_datas_callback_only_without_datasets(tmp_path):
    # Ray Train's datasets callback starts a DatasetManager actor per run; trials have no
    # datasets, so their trainer drops it and keeps every other default callback.
    from ray.train import RunConfig, ScalingConfig
    from ray.train.v2._internal.callbacks import BackendSetupCallback, DatasetsCallback
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from trainables.ray_entry import TrialTrainer

    def build(cls, **kwargs):
        trainer = cls(
            lambda: None,
            backend_config=TorchProcessGroupConfig(),
            scaling_config=ScalingConfig(num_workers=2),
            run_config=RunConfig(name="t", storage_path=str(tmp_path)),
            **kwargs,
        )
        return [type(c) for c in trainer._create_default_callbacks()]

    ray_default = build(DataParallelTrainer)
    trial = build(TrialTrainer)
    assert DatasetsCallback in ray_default and BackendSetupCallback in trial
    assert trial == [c for c in ray_default if c is not DatasetsCallback]
    # A run given a dataset (here a factory, never called) keeps Ray's callbacks as they are.
    assert build(TrialTrainer, datasets={"train": lambda: None}) == ray_default
