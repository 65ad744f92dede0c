"""Gradient averaging through shared memory, for DDP workers that share one machine's CPUs.

DDP's default hook averages each gradient bucket with gloo, over loopback TCP when all
workers are on one machine: for the toy model (3.6M parameters, 14 MB per step each way
through the kernel) that is about 10 ms of a 70 ms step on two cores, spent in send/recv
and in gloo's threads competing with the workers' compute. Here the workers write their
buckets into one shared-memory region and each sums them there: the same arithmetic as
DDP's default hook (every rank's gradient divided by the world size, then summed; for two
ranks the same bits), with two barriers per bucket. It is a DDP communication hook (torch
docs, "DDP Communication Hooks"), registered only for CPU groups on one machine; GPUs and
groups spanning machines keep the default.

The regions live in ``/dev/shm``: rank 0 creates each one with its full size reserved
(``posix_fallocate``, so a full ``/dev/shm`` fails here with ENOSPC instead of killing a
worker with SIGBUS on a later write), every rank maps it, and rank 0 unlinks the name as
soon as all have mapped it (or the group failed meanwhile), so a worker that dies later
leaves nothing behind. Without room, a bucket falls back to gloo, on every rank alike.
"""

from __future__ import annotations

import os
import secrets
import socket

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

SHM_DIR = "/dev/shm"


class SharedMemoryAverager:
    """The hook's state: one mapped region ``[world, numel]`` per bucket.

    DDP rebuilds its buckets once, after the first backward pass; a bucket whose size or
    dtype changed gets a new region and the old mapping is dropped.
    """

    def __init__(self, rank: int, world: int, token: str, folder: str = SHM_DIR) -> None:
        self.rank, self.world, self.token, self.folder = rank, world, token, folder
        # bucket index -> (numel, dtype, region or None where it fell back to gloo)
        self.regions: dict[int, tuple[int, torch.dtype, torch.Tensor | None]] = {}

    @classmethod
    def create(cls, rank: int, world: int, folder: str = SHM_DIR) -> SharedMemoryAverager | None:
        """The state for this group, or None where shared memory cannot serve it (ranks on
        several machines, or no ``folder``). A collective: every rank must call it."""
        here = (socket.gethostname(), os.path.isdir(folder))
        everyone: list[tuple[str, bool] | None] = [None] * world
        dist.all_gather_object(everyone, here)
        if any(other != here for other in everyone) or not here[1]:
            return None
        token = [secrets.token_hex(8) if rank == 0 else None]
        dist.broadcast_object_list(token, src=0)
        return cls(rank, world, token[0], folder)

    def region(self, index: int, numel: int, dtype: torch.dtype) -> torch.Tensor | None:
        known = self.regions.get(index)
        if known is None or known[:2] != (numel, dtype):
            # Replacing the entry drops the old mapping (unmapped once nothing refers to it).
            self.regions[index] = (numel, dtype, self._map(index, numel, dtype))
        return self.regions[index][2]

    def _map(self, index: int, numel: int, dtype: torch.dtype) -> torch.Tensor | None:
        """A collective: rank 0 creates the region; all map it, or all get None."""
        path = os.path.join(self.folder, f"rethink-grads-{self.token}-{index}-{numel}-{str(dtype)[6:]}")
        created = torch.ones(1)
        if self.rank == 0:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.world * numel * dtype.itemsize)
                finally:
                    os.close(fd)
            except OSError:
                created.zero_()
                if os.path.exists(path):
                    os.unlink(path)
        dist.broadcast(created, src=0)
        if not created.item():
            return None
        try:
            region = torch.from_file(path, shared=True, size=self.world * numel, dtype=dtype)
            dist.barrier()  # every rank has mapped it
        finally:
            if self.rank == 0:
                os.unlink(path)
        return region.view(self.world, numel)


# No annotations on ``bucket`` and the return value: DDP compares them with dist.GradBucket
# and Future[Tensor] at registration, and this module's annotations are strings.
def average_gradients(state: SharedMemoryAverager, bucket):
    """DDP communication hook: the bucket's mean over the ranks, through shared memory
    (a ``torch.futures.Future`` holding the bucket's buffer, averaged in place)."""
    buf = bucket.buffer()
    region = state.region(bucket.index(), buf.numel(), buf.dtype)
    if region is None:
        return default_hooks.allreduce_hook(None, bucket)
    torch.div(buf, state.world, out=region[state.rank])
    dist.barrier()  # every rank's share is written
    torch.sum(region, dim=0, out=buf)
    dist.barrier()  # every rank has read the region before any rank writes it again
    done: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    done.set_result(buf)
    return done


def use_shared_memory(
    model: torch.nn.Module, rank: int, world: int, folder: str = SHM_DIR
) -> SharedMemoryAverager | None:
    """Register :func:`average_gradients` on a CPU DDP ``model`` whose ranks share a machine.

    A collective on DDP models with world > 1 (every rank must call it); returns the hook's
    state, or None where the default all-reduce stays.
    """
    if not isinstance(model, torch.nn.parallel.DistributedDataParallel) or world < 2:
        return None
    if next(model.parameters()).device.type != "cpu":
        return None
    state = SharedMemoryAverager.create(rank, world, folder)
    if state is not None:
        model.register_comm_hook(state, average_gradients)
    return state


__all__ = ["SHM_DIR", "SharedMemoryAverager", "average_gradients", "use_shared_memory"]
