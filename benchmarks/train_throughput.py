"""Training throughput: a bare torchvision loop vs. this project's trial on Ray Train.

Prints images/s for (a) a single-process torchvision Mask R-CNN training loop and (b) one
trial of this project through Ray Tune + Ray Train with two DDP workers, on the same tiny
model and the same generated data, and their ratio. Run it, don't time tests:

    python benchmarks/train_throughput.py [--preset toy] [--iterations 60]

(b) is measured twice: over its training loop alone (from the trial's own ``wall_time_s``,
which excludes Ray start-up and worker imports) and end to end (wall clock of the call).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import pandas as pd
import torch
from torch.utils.data import DataLoader

from study import tuning
from study.config import Arm, base_trial
from study.presets import get_preset
from trainables.config import TrialConfig, from_dict
from trainables.data import CocoDetection, collate, load_coco
from trainables.model import build_model, param_groups
from trainables.splits import resolve_data


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
    # (b) the project's trial: 2 Ray Train workers x 1 thread, DDP over gloo, with one
    #     evaluation + checkpoint at the end (included in the loop time).
    tuning.start_ray(None, num_cpus=cores)
    with tempfile.TemporaryDirectory() as tmp:
        loop, end_to_end = ray_trial(base, args.iterations, tmp)
    print(
        f"(b) Ray Train trial, {study.num_workers} workers x {study.cpus_per_worker} thread: "
        f"{loop:7.2f} images/s in the loop, {end_to_end:7.2f} images/s end to end"
    )
    print(f"ratio (b)/(a): {loop / bare:.2f} in the loop, {end_to_end / bare:.2f} end to end")
    torch.set_num_threads(cores)


if __name__ == "__main__":
    main()
