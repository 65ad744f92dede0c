"""Ray Train's torch process-group backend, with torch imported only where it trains.

``ray.train.torch.TorchTrainer`` takes a ``TorchConfig``, whose module imports torch. The
Tune trial actor (which builds the trainer) and Train's controller (which unpickles the
config) import torch only for that: 1.5 CPU-seconds each, both on a trial's start-up path
before any worker exists, on the 2 cores of the default study. This is the same backend
through Ray Train's extension point for communication backends (``ray.train.backend``'s
``BackendConfig`` and ``Backend``, which ``TorchConfig`` itself implements): the workers
run Ray's own set-up and tear-down functions from ``ray.train.torch.config``, through
wrappers that import it there; the controller's part, choosing the backend and the master
address and starting every rank's ``init_process_group``, is that of Ray 2.60's
``_TorchBackend`` for the "env" init method (no TPU branch: this project trains on GPUs or
CPUs).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import ray
from ray._private import ray_constants
from ray.exceptions import GetTimeoutError
from ray.train._internal.utils import get_address_and_port
from ray.train.backend import Backend, BackendConfig
from ray.train.constants import DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S, TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S
from ray.train.v2._internal.util import TrainingFramework

logger = logging.getLogger(__name__)


@dataclass
class TorchProcessGroupConfig(BackendConfig):
    """``TorchConfig`` with the "env" init method: ``backend`` is "nccl" or "gloo"."""

    backend: str = "gloo"
    timeout_s: int = 1800

    @property
    def backend_cls(self) -> type[Backend]:
        return TorchProcessGroupBackend

    @property
    def train_func_context(self) -> type:
        return _WorkerDevice

    @property
    def framework(self) -> TrainingFramework:
        return TrainingFramework.TORCH

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "init_method": "env", "timeout_s": self.timeout_s}


class _WorkerDevice:
    """Ray's ``TorchConfigContextManager`` around the training function: each worker's
    default CUDA device is its own GPU."""

    def __enter__(self) -> None:
        from ray.train.torch.config import TorchConfigContextManager

        TorchConfigContextManager().__enter__()

    def __exit__(self, *exc: object) -> bool:
        return False


# --- run on the workers, where torch is imported anyway --------------------------------------
def _set_master(addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = addr
    os.environ["MASTER_PORT"] = str(port)


def _set_distributed_env() -> None:
    from ray.train.torch.config import _set_torch_distributed_env_vars

    _set_torch_distributed_env_vars()


def _setup_process_group(**kwargs: Any) -> None:
    from ray.train.torch.config import _setup_torch_process_group

    _setup_torch_process_group(**kwargs)


def _shutdown(destroy_process_group: bool) -> None:
    from ray.train.torch.config import _shutdown_torch

    _shutdown_torch(destroy_process_group=destroy_process_group)


class TorchProcessGroupBackend(Backend):
    """Runs in Train's controller: starts and ends the workers' process group."""

    share_cuda_visible_devices: bool = True

    def on_start(self, worker_group, backend_config: TorchProcessGroupConfig) -> None:
        addr, port = worker_group.execute_single(0, get_address_and_port)
        worker_group.execute(_set_master, addr=addr, port=port)
        # LOCAL_RANK and the rest, which torch.distributed reads (torchrun's variables).
        worker_group.execute(_set_distributed_env)
        ray.get(
            [
                worker_group.execute_single_async(
                    rank,
                    _setup_process_group,
                    backend=backend_config.backend,
                    world_rank=rank,
                    world_size=len(worker_group),
                    init_method="env://",
                    timeout_s=backend_config.timeout_s,
                )
                for rank in range(len(worker_group))
            ]
        )

    def on_shutdown(self, worker_group, backend_config: TorchProcessGroupConfig) -> None:
        futures = worker_group.execute_async(_shutdown, destroy_process_group=len(worker_group) > 1)
        timeout_s = ray_constants.env_integer(
            TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S, DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S
        )
        try:
            ray.get(futures, timeout=timeout_s)
        except GetTimeoutError:
            logger.warning("torch process group shutdown timed out after %s s", timeout_s)


__all__ = ["TorchProcessGroupConfig", "TorchProcessGroupBackend"]
