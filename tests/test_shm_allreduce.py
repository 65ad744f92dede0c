"""Shared-memory gradient averaging against DDP's default gloo all-reduce, in two real processes."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from trainables.shm_allreduce import use_shared_memory


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))


def _train(model: nn.Module, rank: int, steps: int = 3) -> list[torch.Tensor]:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    for _ in range(steps):
        x, y = torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 5, generator=gen)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def _worker(rank: int, world: int, port: int, folder: str, out: str, full: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    if full:  # /dev/shm without room: the reservation fails as on a full tmpfs

        def no_room(fd, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")

        os.posix_fallocate = no_room
    # A tiny bucket cap: several buckets, rebuilt after the first backward pass.
    ddp = dict(bucket_cap_mb=0.001, gradient_as_bucket_view=True)
    reference = _train(nn.parallel.DistributedDataParallel(_model(), **ddp), rank)
    hooked_model = nn.parallel.DistributedDataParallel(_model(), **ddp)
    state = use_shared_memory(hooked_model, rank, world, folder)
    hooked = _train(hooked_model, rank)
    Path(out, f"rank{rank}.json").write_text(
        json.dumps(
            {
                "registered": state is not None,
                # Per bucket, whether it went through shared memory (False: gloo).
                "shared": [region is not None for _, _, region in state.regions.values()],
                "comm_hook": hooked_model._get_ddp_logging_data().get("comm_hook", ""),
                "same_bits": all(torch.equal(a, b) for a, b in zip(reference, hooked)),
                "params": [p.flatten().tolist() for p in hooked],
                "left_in_folder": os.listdir(folder),
            }
        )
    )
    dist.barrier()
    # Leave without the interpreter's teardown, where gloo's threads now and then abort the
    # process ("terminate called without an active exception") after the work is done.
    os._exit(0)


def _run(tmp_path: Path, port: int, full: bool) -> list[dict]:
    folder, out = tmp_path / "shm", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    mp.spawn(_worker, args=(2, port, str(folder), str(out), full), nprocs=2)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_shared_memory_average_equals_gloo_bit_for_bit(tmp_path):
    ranks = _run(tmp_path, 29611, full=False)
    for r in ranks:
        assert r["registered"] and r["comm_hook"] == "average_gradients"
        assert len(r["shared"]) >= 2 and all(r["shared"])
        # The same parameters after 3 steps (bucket rebuild included) as DDP's own all-reduce.
        assert r["same_bits"]
        # Every region's name was unlinked once mapped: nothing left behind.
        assert r["left_in_folder"] == []
    assert ranks[0]["params"] == ranks[1]["params"]


def test_without_room_every_rank_falls_back_to_gloo(tmp_path):
    ranks = _run(tmp_path, 29612, full=True)
    for r in ranks:
        assert r["registered"] and r["same_bits"] and r["left_in_folder"] == []
        assert len(r["shared"]) >= 2 and not any(r["shared"])
    assert ranks[0]["params"] == ranks[1]["params"]


def test_single_process_and_plain_modules_keep_the_default():
    assert use_shared_memory(_model(), 0, 1) is None
    assert use_shared_memory(_model(), 0, 2) is None  # not a DDP model
