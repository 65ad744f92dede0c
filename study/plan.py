"""What a study will run, computed before anything runs (``--dry-run`` prints it).

Arms, trials per arm, resources per trial, how many trials fit at once, and iteration and
cost estimates. Pure functions of the preset and a cluster size; no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from study.config import Arm, StudyConfig, arms, search_space
from trainables.schedule import total_iterations


@dataclass(frozen=True)
class ArmPlan:
    arm: Arm
    trials: int
    schedules: tuple[float, ...]
    max_iterations: int  # the longest schedule of the arm
    expected_iterations: int  # trials x mean schedule length, before early stopping


@dataclass(frozen=True)
class Plan:
    study: StudyConfig
    arms: tuple[ArmPlan, ...]
    workers_per_trial: int
    cpus_per_trial: int
    gpus_per_trial: int
    max_concurrent: int
    capacity: str

    @property
    def total_trials(self) -> int:
        return sum(a.trials for a in self.arms)

    @property
    def expected_iterations(self) -> int:
        return sum(a.expected_iterations for a in self.arms)


def max_concurrent_trials(study: StudyConfig, cluster_cpus: float, cluster_gpus: float) -> int:
    """Trials whose worker groups fit at once; at least 1 (a trial waits for its group).

    An explicit ``max_concurrent_trials`` wins; GPU presets count the GPUs an autoscaling
    cluster may grow to (``cluster_gpus``), not only those up now.
    """
    if study.max_concurrent_trials:
        return study.max_concurrent_trials
    if study.use_gpu:
        fit = int(max(cluster_gpus, study.cluster_gpus) // study.num_workers)
    else:
        fit = int(cluster_cpus // (study.num_workers * study.cpus_per_worker))
    return max(1, fit)


def make_plan(study: StudyConfig, num_samples: int, cluster_cpus: float, cluster_gpus: float, capacity: str) -> Plan:
    plans = []
    for arm in arms(study):
        schedules = search_space(study, arm).schedule
        longest = total_iterations(study.solver.base_iters, max(schedules))
        mean = sum(total_iterations(study.solver.base_iters, s) for s in schedules) / len(schedules)
        plans.append(ArmPlan(arm, num_samples, schedules, longest, round(num_samples * mean)))
    return Plan(study, tuple(plans), study.num_workers, study.num_workers * study.cpus_per_worker,
                study.num_workers if study.use_gpu else 0, max_concurrent_trials(study, cluster_cpus, cluster_gpus),
                capacity)


def format_plan(plan: Plan) -> str:
    s = plan.study
    batch = s.num_workers * s.solver.ims_per_worker
    lines = [
        f"study preset {s.name}: {s.description}",
        f"  arms: {len(plan.arms)}, trials: {plan.total_trials} ({plan.arms[0].trials} per arm), objective {s.objective}",
        f"  per trial: {plan.workers_per_trial} Ray Train workers x ({s.cpus_per_worker} CPU"
        f"{', 1 GPU' if s.use_gpu else ''}), {s.solver.ims_per_worker} images/worker = batch {batch}"
        + (f"; {plan.gpus_per_trial} GPUs per trial" if s.use_gpu else ""),
        f"  concurrency: {plan.max_concurrent} trial(s) at once ({plan.capacity})",
        f"  1x = {s.solver.base_iters} iterations; evaluation every {s.eval_period or 'end of'} iterations"
        f"{'' if not s.eval_period else ' and at the end'}",
        f"  early stopping: {'ASHA per (arm, schedule), first rung at ' + format(s.early_stopping.grace_fraction, 'g') + ' of the schedule, reduction ' + str(s.early_stopping.reduction_factor) if s.early_stopping.enabled else 'off'}",
        "",
        f"  {'arm':<26} {'trials':>6} {'schedules':<14} {'lr range':<17} {'wd range':<17} {'iterations':>11}",
    ]
    for a in plan.arms:
        space = search_space(s, a.arm)
        lines.append(
            f"  {a.arm.name:<26} {a.trials:>6} {','.join(f'{x:.3g}x' for x in a.schedules):<14} "
            f"{space.lr[0]:.3g}-{space.lr[1]:<11.3g} {space.weight_decay[0]:.2g}-{space.weight_decay[1]:<11.2g} "
            f"{a.expected_iterations:>11,}")
    lines.append(f"  expected iterations (no early stopping): {plan.expected_iterations:,}")
    if s.use_gpu and s.seconds_per_iteration:
        lines += ["", f"  cost estimate ({plan.gpus_per_trial} GPUs per trial; seconds per iteration of the whole "
                      f"{batch}-image step, cited in study/presets.py; override with --set seconds_per_iteration.GPU=S):"]
        for gpu, seconds in sorted(s.seconds_per_iteration.items()):
            hours = gpu_hours(plan, seconds)
            lines.append(f"    {gpu:<6} {seconds:.3f} s/iter -> {hours:,.0f} GPU-hours, "
                         f"{hours / plan.gpus_per_trial / plan.max_concurrent:,.0f} h wall clock at "
                         f"{plan.max_concurrent} trial(s) at once")
    return "\n".join(lines)


def gpu_hours(plan: Plan, seconds_per_iteration: float) -> float:
    """Expected iterations x step time x GPUs per trial (before early stopping saves some)."""
    return plan.expected_iterations * seconds_per_iteration * plan.gpus_per_trial / 3600
