"""What a trial needs from the process it runs in, and the collectives it uses.

A :class:`Session` is the seam between the engine (trainables/engine/trial.py) and its runtime:
rank, world size, device, how to wrap the model and loader, how to report and restore,
and any extra loop hooks (a benchmark's timer). Ray Train provides one per worker
(trainables/engine/ray_entry.py); tests build one for a plain process. Here too are the few
collectives every rank calls at the same point: gathering a Python object, averaging the
losses while backward runs, and agreeing on bad input so that all ranks stop together.
"""

from __future__ import annotations

import random
import socket
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from trainables.contract.errors import InputError


@dataclass(frozen=True)
class Session:
    """What the loop needs from its runtime (Ray Train, or one plain process in tests)."""

    rank: int
    world_size: int
    device: torch.device
    # report(metrics, state): the trainer's state_dict(): every rank calls it; only rank 0 passes a state.
    report: Callable[[dict[str, Any], dict[str, Any] | None], None]
    # The latest checkpoint's state, or None on a fresh start.
    load_checkpoint: Callable[[], dict[str, Any] | None]
    prepare_model: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m
    prepare_loader: Callable[[DataLoader], Any] = lambda loader: loader
    log: Callable[[str], None] = print
    # Loop hooks (trainables/engine/loop.py's HookBase) to run after the trial's own.
    hooks: Sequence[Any] = ()

    @property
    def rank0_log(self) -> Callable[[str], None]:
        """``log`` on rank 0, silence elsewhere (one line per trial, not per rank)."""
        return self.log if self.rank == 0 else _silent


class AgreedInputError(Exception):
    """Raised on every rank at once: bad input that one or more ranks found (``errors``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors


def describe_input_error(err: BaseException, rank: int, node: str | None = None) -> dict[str, Any]:
    return {
        "type": type(err).__name__,
        "message": str(err),
        "field": getattr(err, "field", None),
        "rank": rank,
        "node": node or socket.gethostname(),
        "traceback": "".join(traceback.format_exception(err)),
    }


# What a trial's set-up (config, files, model, weights; nothing trained yet) can raise that
# a retry would raise again: bad values and missing or malformed files.
SETUP_INPUT_ERRORS = (InputError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


def agree_on_input(
    session: Session, fn: Callable[[], Any], errors: tuple[type[BaseException], ...] = SETUP_INPUT_ERRORS
) -> Any:
    """``fn()`` on every rank; if it raised one of ``errors`` on any rank, every rank raises
    :class:`AgreedInputError` with what each rank found (one gather, also on success).

    ``fn`` must hold no collective: a rank that fails inside it must not leave the others
    waiting.
    """
    mine, value = None, None
    try:
        value = fn()
    except errors as err:
        mine = describe_input_error(err, session.rank)
    found = [e for e in gather(mine, session.world_size) if e is not None]
    if found:
        raise AgreedInputError(found)
    return value


def gather(obj: Any, world: int) -> list[Any]:
    """Every rank's ``obj``, on every rank, in rank order."""
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


class MeanAcrossRanks:
    """An asynchronous all-reduce of a small tensor; ``wait()`` gives the mean on its device
    (with NCCL the host does not wait: later work on the stream does)."""

    def __init__(self, t: torch.Tensor, world: int) -> None:
        self.t, self.world = t, world
        self.work = dist.all_reduce(t, op=dist.ReduceOp.SUM, async_op=True) if world > 1 else None

    def wait(self) -> torch.Tensor:
        if self.work is not None:
            self.work.wait()
        return self.t / self.world


class HostCopy:
    """A small device tensor on its way to the host: the copy is queued behind the work that
    makes it (pinned memory, ``non_blocking``), and ``get()`` waits for that copy alone, so
    the host can queue the next step first (PyTorch's "CUDA semantics" notes on
    non-blocking copies and events). A CPU tensor is simply kept."""

    def __init__(self, t: torch.Tensor) -> None:
        self.event = None
        if t.device.type == "cuda":
            self.host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            self.host.copy_(t, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = t.detach()

    def get(self) -> torch.Tensor:
        if self.event is not None:
            self.event.synchronize()
        return self.host


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _silent(_msg: str) -> None:
    pass
