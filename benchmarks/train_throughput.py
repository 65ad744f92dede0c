"""Training throughput: a bare torchvision loop vs. this project's trial, with and without Ray.

Prints images/s for (a) a bare torchvision Mask R-CNN training loop (forward, backward, the
trial's SGD at its LR schedule with its clipping; no engine, no hooks, no DDP) in as many
processes side by side as the trial has workers, each with the trial's threads, seed and
batches (its sampler and aspect grouping), so that it trains the trial's trajectory, (b) one
trial of this project through Ray Tune + Ray Train with its DDP workers, and (c) the same
trial's engine (trainables/engine/trial.py) in as many plain processes joined by
torch.distributed, without Ray, all on the same model and generated data, and their ratios:
(b)/(a) is what the trial loop costs against the bare step, (b)/(c) what running under Ray
costs it. Run it, don't time tests:

    python benchmarks/train_throughput.py [--preset toy] [--iterations 200] [--repeats 3]

Every figure is timed the same way: the intervals between consecutive optimizer steps on
rank 0 (a ``torch.optim`` step hook), after ``--warmup`` steps (the first-seen padded batch
shapes and allocations: the toy's images are resized to one shorter side, so its batches
come in a few padded shapes), over ``--iterations`` steps, with no evaluation inside (the
trials evaluate once, after their last step) and no loader restart (the toy reads in the
training process). (b) is also given end to end (wall clock of the call: Ray start-up,
worker imports and the evaluation). Rounds run (a), (c), (b) in turn, each (b) on a fresh
local Ray; medians of the rounds and of the per-round ratios are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.optim.optimizer import register_optimizer_step_post_hook

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trial_probe  # noqa: E402  (benchmarks/, beside this file)

from study.hpo import tuning  # noqa: E402
from study.spec.presets import get_preset  # noqa: E402
from study.spec.resolved import base_trial  # noqa: E402
from study.spec.study_config import Arm  # noqa: E402
from trainables.contract.config_io import from_dict  # noqa: E402
from trainables.contract.trial_config import TrialConfig  # noqa: E402
from trainables.data.dataset import build_datasets  # noqa: E402
from trainables.data.splits import resolve_data  # noqa: E402
from trainables.engine import trial  # noqa: E402
from trainables.engine.schedule import at_batch, lr_multiplier  # noqa: E402
from trainables.model.mask_rcnn import param_groups  # noqa: E402


def _bare_worker(rank: int, config: dict, steps: int, out: str) -> None:
    """One process of :func:`bare_loop`: the trial's model, seed and very batches (its sampler,
    aspect grouping and shard) and the trial's math per step (SGD at its LR schedule,
    clipping), so the model follows the trial's trajectory and each step does the same work
    (a Mask R-CNN step's cost moves with its proposals); no engine, no hooks, no DDP."""
    cfg = from_dict(TrialConfig, config)
    s = cfg.solver
    torch.set_num_threads(cfg.cpus_per_worker)
    trial.seed_everything(cfg.seed * 1000 + rank)
    train_set, _ = build_datasets(cfg, resolve_data(cfg.data))
    session = trial.Session(
        rank=rank, world_size=cfg.num_workers, device=torch.device("cpu"), report=None, load_checkpoint=None
    )
    model = trial.build_trial_model(cfg, train_set.num_classes, lambda _msg: None)
    peak = at_batch(s, cfg.global_batch, cfg.lr).peak_lr
    groups = param_groups(model, cfg.weight_decay, s.weight_decay_norm)
    opt = torch.optim.SGD(groups, lr=peak, momentum=s.momentum, fused=True)
    batches = trial.TrainingBatches(cfg, session, train_set)(0)
    model.train()
    stamps: list[float] = []
    for i in range(steps):
        multiplier = lr_multiplier(
            i,
            base_iters=s.base_iters,
            schedule=1.0,
            warmup_iters=s.warmup_iters,
            warmup_factor=s.warmup_factor,
            gamma=s.gamma,
        )
        for group in opt.param_groups:
            group["lr"] = peak * multiplier
        images, targets = next(batches)
        loss = sum(model(images, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip_grad_norm, foreach=True)
        opt.step()
        stamps.append(time.time())
    Path(out, f"bare-{rank}.json").write_text(json.dumps(stamps))


def bare_loop(base: dict, workers: int, warmup: int, iterations: int) -> float:
    """Images/s of ``workers`` bare loops side by side (summed), each timed after ``warmup`` steps."""
    cfg = from_dict(TrialConfig, base)
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_bare_worker, args=(base, warmup + iterations + 1, out), nprocs=workers)
        rates = []
        for rank in range(workers):
            stamps = json.loads(Path(out, f"bare-{rank}.json").read_text())
            timed = trial_probe.summarise(stamps, [], stamps[0], cfg.solver.ims_per_worker, warmup=warmup)
            rates.append(timed["loop_images_per_s"])
    return sum(rates)


def _engine_worker(rank: int, config: dict, port: int) -> None:
    """One rank of :func:`engine_without_ray`: what train_fn_per_worker does, minus Ray; rank 0
    writes its step and evaluation times beside the rows."""
    cfg = from_dict(TrialConfig, config)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(cfg.cpus_per_worker)
    dist.init_process_group("gloo", rank=rank, world_size=cfg.num_workers)
    stamps: list[float] = []
    evals: list[tuple[float, float]] = []
    register_optimizer_step_post_hook(lambda *_: stamps.append(time.time()))

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
        # DDP only across processes, as Ray Train's prepare_model wraps it.
        prepare_model=lambda m: (
            torch.nn.parallel.DistributedDataParallel(m, gradient_as_bucket_view=True) if cfg.num_workers > 1 else m
        ),
        log=lambda _msg: None,
        hooks=(trial_probe.evaluation_timer(evals),),
    )
    try:
        trial.run_trial(cfg, session)
    finally:
        dist.destroy_process_group()
    if rank == 0:
        Path(cfg.results_uri, trial_probe.TIMING_FILE).write_text(json.dumps({"steps": stamps, "evals": evals}))


def engine_without_ray(base: dict, warmup: int, results: str) -> float:
    """Images/s of the trial's training loop in plain processes (torch.distributed over gloo)."""
    config = {**base, "schedule": 1.0, "seed": 0, "results_uri": results, "trial_id": "noray"}
    with socket.socket() as s:  # a free port for the process group's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_engine_worker, args=(config, port), nprocs=base["num_workers"])
    timing = json.loads(Path(results, trial_probe.TIMING_FILE).read_text())
    batch = base["num_workers"] * base["solver"]["ims_per_worker"]
    return trial_probe.summarise(timing["steps"], timing["evals"], timing["steps"][0], batch, warmup)[
        "loop_images_per_s"
    ]


def one_round(base: dict, workers: int, warmup: int, iterations: int) -> dict[str, float]:
    """(a), (c) and (b) once, in that order: (c) before Ray starts, so that none of its
    processes share the cores; Ray stops after (b)."""
    import ray

    bare = bare_loop(base, workers, warmup, iterations)
    with tempfile.TemporaryDirectory() as tmp:
        plain = engine_without_ray(base, warmup, tmp)
    trial_probe.add_to_worker_path()
    tuning.start_ray(None, num_cpus=os.cpu_count() or 1)
    start = time.perf_counter()
    try:
        probed = trial_probe.run_probed_trial(
            base, {"lr": base["lr"], "weight_decay": base["weight_decay"], "schedule": 1.0, "seed": 0}, warmup
        )
    finally:
        ray.shutdown()
    steps = base["solver"]["base_iters"]
    batch = base["num_workers"] * base["solver"]["ims_per_worker"]
    return {
        "bare": bare,
        "plain": plain,
        "loop": probed["loop_images_per_s"],
        "end_to_end": steps * batch / (time.perf_counter() - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="toy")
    parser.add_argument("--iterations", type=int, default=200, help="timed steps after the warm-up (default 200)")
    parser.add_argument(
        "--warmup", type=int, default=20, help="untimed steps first: the first-seen batch shapes (default 20)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported (default 3)")
    args = parser.parse_args()
    study = get_preset(args.preset)
    arm = Arm("scratch", 1.0, study.axes.model[0])
    base = base_trial(study, arm, results_uri="", code_version="bench", pretrained={})
    cfg = from_dict(TrialConfig, base)
    workers, threads, per_worker = cfg.num_workers, cfg.cpus_per_worker, cfg.solver.ims_per_worker
    steps = args.warmup + args.iterations + 1
    # The trials evaluate once, after their last step: outside every timed interval.
    base = {**base, "solver": {**base["solver"], "base_iters": max(9, steps)}, "eval_period": 0}
    print(
        f"preset {study.name}: model {arm.model}, {workers} worker(s) x {threads} thread(s) x {per_worker} images, "
        f"{args.warmup} warm-up + {args.iterations} timed steps, {args.repeats} rounds, {os.cpu_count()} cores",
        flush=True,
    )
    rounds = []
    for r in range(args.repeats):
        got = one_round(base, workers, args.warmup, args.iterations)
        rounds.append(got)
        print(
            f"  round {r + 1}: (a) bare {got['bare']:6.2f}, (c) engine without Ray {got['plain']:6.2f}, "
            f"(b) Ray trial {got['loop']:6.2f} in the loop, {got['end_to_end']:6.2f} end to end (images/s)",
            flush=True,
        )

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def ratio(a: str, b: str) -> float:
        return statistics.median(r[a] / r[b] for r in rounds)

    print(f"medians of {len(rounds)}:")
    print(f"(a) bare torchvision loop, {workers} process(es) x {threads} thread(s): {median('bare'):7.2f} images/s")
    print(f"(c) the trial's engine without Ray (plain processes):    {median('plain'):7.2f} images/s in the loop")
    print(
        f"(b) Ray Train trial:                                      {median('loop'):7.2f} images/s in the loop, "
        f"{median('end_to_end'):.2f} end to end"
    )
    print(f"ratio (b)/(a): {ratio('loop', 'bare'):.2f} in the loop (the trial loop against the bare step)")
    print(f"ratio (b)/(c): {ratio('loop', 'plain'):.2f} in the loop (what Ray costs the training loop)")


if __name__ == "__main__":
    main()
