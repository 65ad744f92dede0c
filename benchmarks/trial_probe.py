"""Timing hooks for one trial through the real Ray Tune + Ray Train path (benchmarks only).

``run_probed_trial`` runs one trial of an arm config and returns what its rank 0 timed:
the end of every optimizer step and the span of every evaluation, plus when Tune started
the trial (a Tune callback in the driver). ``summarise`` turns those into loop images/s,
start-up seconds and evaluation seconds. The steps are timed by a ``torch.optim`` step hook,
the evaluations by a loop hook that comes in through the trial's Session
(``train_fn_per_worker(config, hooks=...)``), and the Tune trial runs the project's own
driver function with this module's worker function (``train_driver_fn(..., worker_fn=...)``):
nothing of the project is patched. benchmarks/trial_speed.py ``--against`` therefore needs a
revision that has those two parameters.

The Ray workers import this module by name, so its folder must be on ``PYTHONPATH`` before
Ray starts (``add_to_worker_path``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TIMING_FILE = "bench-timing.json"
HERE = Path(__file__).resolve().parent


def add_to_worker_path() -> None:
    """Make this folder importable here and in every Ray worker started after this call."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(HERE) not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([*parts, str(HERE)])


def evaluation_timer(evals: list[tuple[float, float]]):
    """A loop hook (through the trial's Session) that appends each evaluation's (start, end)."""
    from trainables.engine.loop import HookBase

    class EvaluationTimer(HookBase):
        def before_evaluate(self, trainer) -> None:
            self.start = time.time()

        def after_evaluate(self, trainer) -> None:
            evals.append((self.start, time.time()))

    return EvaluationTimer()


def timed_worker_fn(config: dict[str, Any]) -> None:
    """``train_fn_per_worker`` with step and evaluation timestamps written by rank 0."""
    import ray.train
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    import trainables.engine.ray_entry as ray_entry

    stamps: list[float] = []
    evals: list[tuple[float, float]] = []
    register_optimizer_step_post_hook(lambda *_: stamps.append(time.time()))
    try:
        ray_entry.train_fn_per_worker(config, hooks=(evaluation_timer(evals),))
    finally:
        if ray.train.get_context().get_world_rank() == 0:
            # The trial's peak GPU memory on rank 0 (training and evaluation), None on a CPU.
            peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
            timing = {"steps": stamps, "evals": evals, "engine": ray_entry.__file__, "peak_gib": peak}
            Path(config["results_uri"], TIMING_FILE).write_text(json.dumps(timing))


def timed_driver_fn(config: dict[str, Any], arms: dict[str, dict[str, Any]]) -> None:
    """The Tune trial: the project's own driver function, with the timed worker function
    (sent by reference: the workers import this module, on their path)."""
    import trainables.engine.ray_entry as ray_entry

    ray_entry.train_driver_fn(config, arms, worker_fn=timed_worker_fn)


def run_probed_trial(base: dict[str, Any], params: dict[str, Any], warmup: int = 5) -> dict[str, Any]:
    """One trial of ``base`` (an arm's trial config) with ``params``; its timing, summarised
    (the first ``warmup`` steps left out).

    Ray must already be started (``study.hpo.tuning.start_ray``), after ``add_to_worker_path``.
    """
    from ray import tune

    from study.hpo import tuning

    started: list[float] = []

    class TrialStart(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            started.append(time.time())

    with tempfile.TemporaryDirectory() as results:
        arms = {base["arm"]: {**base, "results_uri": results, "max_failures": 0}}
        run_config = tuning.run_config(results, callbacks=[TrialStart()])
        run_config.failure_config = tune.FailureConfig(max_failures=0)  # a benchmark never retries
        fn = tune.with_resources(tune.with_parameters(timed_driver_fn, arms=arms), tuning.driver_resources())
        tuner = tune.Tuner(
            fn,
            param_space={"arm": base["arm"], **params},
            tune_config=tune.TuneConfig(num_samples=1, metric="bbox_AP", mode="max"),
            run_config=run_config,
        )
        grid = tuner.fit()
        if grid[0].error:
            raise RuntimeError(f"the benchmark trial failed: {grid[0].error}")
        timing = json.loads(Path(results, TIMING_FILE).read_text())
    batch = base["num_workers"] * base["solver"]["ims_per_worker"]
    summary = summarise(timing["steps"], timing["evals"], started[0], batch, warmup)
    return {**summary, "engine": timing["engine"], "peak_gib": timing.get("peak_gib")}


def summarise(
    steps: list[float], evals: list[tuple[float, float]], trial_start: float, batch: int, warmup: int = 5
) -> dict[str, float]:
    """Loop images/s, start-up and evaluation seconds from step and evaluation timestamps.

    The loop leaves out the first ``warmup`` steps and every step interval that holds an
    evaluation; start-up runs from Tune starting the trial to the end of its first step.
    """
    spans = [(a, b) for a, b in zip(steps[warmup:], steps[warmup + 1 :]) if not any(a <= s < b for s, _ in evals)]
    if not spans:
        raise ValueError(f"{len(steps)} steps leave no interval to time after {warmup} warm-up steps")
    loop = sum(b - a for a, b in spans)
    return {
        "loop_images_per_s": len(spans) * batch / loop,
        "startup_s": steps[0] - trial_start,
        "eval_s": statistics.mean(e - s for s, e in evals) if evals else float("nan"),
        "steps": len(steps),
    }
