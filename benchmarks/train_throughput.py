"""Training throughput: a bare torchvision loop vs. this project's trial, with and without Ray.

Prints images/s for (a) a single-process torchvision Mask R-CNN training loop, (b) one
trial of this project through Ray Tune + Ray Train with its DDP workers, and (c) the same
trial's engine (trainables/engine/trial.py) in as many plain processes joined by
torch.distributed, without Ray, all on the same tiny model and the same generated data,
and their ratios: (b)/(c) is what running under Ray costs the training loop. Run it, don't
time tests:

    python benchmarks/train_throughput.py [--preset toy] [--iterations 60]

(b) is measured twice: over its training loop alone (from the trial's own ``wall_time_s``,
which excludes Ray start-up and worker imports) and end to end (wall clock of the call);
(c) over its loop alone, the same way.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from study.hpo import tuning
from study.spec.presets import get_preset
from study.spec.resolved import base_trial
from study.spec.study_config import Arm
from trainables.contract.config_io import from_dict
from trainables.contract.trial_config import TrialConfig
from trainables.data.dataset import CocoDetection, collate, load_coco
from trainables.data.splits import resolve_data
from trainables.engine import trial
from trainables.model.mask_rcnn import build_model, param_groups


def bare_loop(cfg: TrialConfig, iterations: int, threads: int) -> float:
    """Images/s of a plain loop: one process, torchvision model, SGD, no evaluation."""
    torch.set_num_threads(threads)
    paths = resolve_data(cfg.data)
    ds = CocoDetection(paths.train_images, load_coco(paths.train_annotations), train=True)
    model = build_model(cfg.model, ds.num_classes, min_size=cfg.data.min_size, max_size=cfg.data.max_size)
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay, 0.0), lr=0.01, momentum=0.9)
    batch = cfg.solver.ims_per_worker
    loader = DataLoader(ds, batch_size=batch, shuffle=True, collate_fn=collate, drop_last=True)
    model.train()
    done, start = 0, None
    while done < iterations + 5:
        for images, targets in loader:
            if done == 5:  # skip warm-up iterations
                start = time.perf_counter()
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done >= iterations + 5:
                break
    return iterations * batch / (time.perf_counter() - start)


def _engine_worker(rank: int, config: dict, port: int) -> None:
    """One rank of :func:`engine_without_ray`: what train_fn_per_worker does, minus Ray."""
    cfg = from_dict(TrialConfig, config)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(cfg.cpus_per_worker)
    dist.init_process_group("gloo", rank=rank, world_size=cfg.num_workers)

    def report(_metrics: dict, state: dict | None) -> None:
        if state is not None:  # the trial's checkpoint is written as Ray's report writes it
            with tempfile.TemporaryDirectory() as tmp:
                torch.save(state, os.path.join(tmp, "state.pt"))

    session = trial.Session(
        rank=rank,
        world_size=cfg.num_workers,
        device=torch.device("cpu"),
        report=report,
        load_checkpoint=lambda: None,
        prepare_model=lambda m: torch.nn.parallel.DistributedDataParallel(m, gradient_as_bucket_view=True),
        log=lambda _msg: None,
    )
    try:
        trial.run_trial(cfg, session)
    finally:
        dist.destroy_process_group()


def engine_without_ray(base: dict, iterations: int, results: str) -> float:
    """Images/s of the trial's training loop in plain processes (torch.distributed over gloo)."""
    solver = {**base["solver"], "base_iters": iterations}
    config = {**base, "solver": solver, "eval_period": 0, "results_uri": results, "trial_id": "noray"}
    with socket.socket() as s:  # a free port for the process group's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_engine_worker, args=(config, port), nprocs=base["num_workers"])
    row = pd.read_parquet(os.path.join(results, "metrics")).iloc[-1]
    return row["images_seen"] / row["wall_time_s"]


def ray_trial(base: dict, iterations: int, results: str) -> tuple[float, float]:
    """(images/s of the training loop, images/s end to end) for one Train run."""
    solver = {**base["solver"], "base_iters": iterations}
    arms = {base["arm"]: {**base, "solver": solver, "eval_period": 0, "results_uri": results}}
    start = time.perf_counter()
    tuning.run_single_trial(
        arms,
        {"arm": base["arm"], "lr": base["lr"], "weight_decay": base["weight_decay"], "schedule": 1.0, "seed": 0},
        results,
        "bbox_AP",
        resume=False,
    )
    total = time.perf_counter() - start
    row = pd.read_parquet(os.path.join(results, "metrics")).iloc[-1]
    return row["images_seen"] / row["wall_time_s"], row["images_seen"] / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="toy")
    parser.add_argument("--iterations", type=int, default=60)
    args = parser.parse_args()
    study = get_preset(args.preset)
    arm = Arm("scratch", 1.0, study.axes.model[0])
    base = base_trial(study, arm, results_uri="", code_version="bench", pretrained={})
    cfg = from_dict(TrialConfig, base)
    cores = os.cpu_count() or 1
    print(
        f"preset {study.name}: model {arm.model}, {cfg.solver.ims_per_worker} images per worker, "
        f"{args.iterations} iterations, {cores} cores"
    )
    # (a) one process using every core, the same images per iteration as one worker.
    bare = bare_loop(cfg, args.iterations, threads=cores)
    print(f"(a) bare torchvision loop, 1 process x {cores} threads: {bare:7.2f} images/s")
    # (c) before Ray starts, so that none of its processes share the cores.
    with tempfile.TemporaryDirectory() as tmp:
        plain = engine_without_ray({**base, "schedule": 1.0, "seed": 0}, args.iterations, tmp)
    # (b) the project's trial: 2 Ray Train workers x 1 thread, DDP over gloo, with one
    #     evaluation + checkpoint at the end (included in the loop time).
    tuning.start_ray(None, num_cpus=cores)
    with tempfile.TemporaryDirectory() as tmp:
        loop, end_to_end = ray_trial(base, args.iterations, tmp)
    print(
        f"(b) Ray Train trial, {study.num_workers} workers x {study.cpus_per_worker} thread: "
        f"{loop:7.2f} images/s in the loop, {end_to_end:7.2f} images/s end to end"
    )
    print(
        f"(c) the same engine without Ray, {study.num_workers} processes x {study.cpus_per_worker} thread: "
        f"{plain:7.2f} images/s in the loop"
    )
    print(f"ratio (b)/(a): {loop / bare:.2f} in the loop, {end_to_end / bare:.2f} end to end")
    print(f"ratio (b)/(c): {loop / plain:.2f} in the loop (what Ray costs the training loop)")
    torch.set_num_threads(cores)


if __name__ == "__main__":
    main()
