"""What a study will run, computed before anything runs (``--dry-run`` prints it: study/plan/text.py).

Arms, trials per arm, resources per trial, how many trials fit at once, and iteration and
cost estimates. Pure functions of the resolved study (study/spec/resolved.py) and a cluster size;
no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from study.spec.resolved import ArmSpec, ResolvedStudy
from study.spec.study_config import Arm, StudyConfig
from trainables.data.census import DataCounts
from trainables.engine.branches import Branch, independent_iterations, trial_iterations


@dataclass(frozen=True)
class ArmPlan:
    spec: ArmSpec
    trials: int
    schedules: tuple[float, ...]
    recipe_schedule: float
    recipe_lr: float
    # The recipe's trial: its trunk and every branch, and the same schedules run separately.
    recipe_iterations: int
    recipe_independent: int
    # The recipe, then trials x the mean cost of a searched trunk, before early stopping;
    # and the same trials with every schedule run separately.
    expected_iterations: int
    expected_independent: int
    # Images the same trials evaluate: the trunk's evaluations (search split) and every
    # schedule's final (search and test splits).
    expected_eval_images: int = 0

    @property
    def arm(self) -> Arm:
        return self.spec.arm


@dataclass(frozen=True)
class Plan:
    resolved: ResolvedStudy
    arms: tuple[ArmPlan, ...]
    workers_per_trial: int
    cpus_per_trial: int
    gpus_per_trial: int
    max_concurrent: int
    capacity: str
    # The training file's counts (and the evaluation splits'), where they were read.
    counts: DataCounts | None = None

    @property
    def study(self) -> StudyConfig:
        return self.resolved.study

    @property
    def total_trials(self) -> int:
        return sum(a.trials for a in self.arms)

    @property
    def expected_iterations(self) -> int:
        return sum(a.expected_iterations for a in self.arms)

    @property
    def expected_independent(self) -> int:
        return sum(a.expected_independent for a in self.arms)

    @property
    def expected_eval_images(self) -> int:
        return sum(a.expected_eval_images for a in self.arms)

    @property
    def longest_trial(self) -> int:
        return max(a.recipe_iterations for a in self.arms)


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


def make_plan(
    resolved: ResolvedStudy,
    num_samples: int,
    cluster_cpus: float,
    cluster_gpus: float,
    capacity: str,
    counts: DataCounts | None = None,
) -> Plan:
    study = resolved.study
    plans = []
    for spec in resolved.arms:
        schedules = spec.schedules
        recipe = spec.recipe["schedule"]
        recipe_plan = spec.recipe_branches
        plans_by_s = [spec.branches_of(s) for s in schedules]
        mean = sum(map(trial_iterations, plans_by_s)) / len(schedules)
        mean_alone = sum(map(independent_iterations, plans_by_s)) / len(schedules)
        expected = trial_iterations(recipe_plan) + round((num_samples - 1) * mean)
        alone = independent_iterations(recipe_plan) + round((num_samples - 1) * mean_alone)
        mean_eval = sum(_eval_images(study, p, counts) for p in plans_by_s) / len(schedules)
        evaluated = _eval_images(study, recipe_plan, counts) + round((num_samples - 1) * mean_eval)
        plans.append(
            ArmPlan(
                spec,
                num_samples,
                schedules,
                recipe,
                spec.recipe["lr"],
                trial_iterations(recipe_plan),
                independent_iterations(recipe_plan),
                expected,
                alone,
                evaluated,
            )
        )
    return Plan(
        resolved,
        tuple(plans),
        study.num_workers,
        study.num_workers * study.cpus_per_worker,
        study.num_workers if study.use_gpu else 0,
        max_concurrent_trials(study, cluster_cpus, cluster_gpus),
        capacity,
        counts,
    )


def split_sizes(s: StudyConfig, counts: DataCounts | None = None) -> tuple[int, int]:
    """Images in the search and test splits: counted where the files were read, else the
    preset's (0 where the plan cannot know: a search file)."""
    d = s.data
    if counts is not None and counts.search_images is not None:
        test = counts.test_images or 0
        return counts.search_images, (test if d.has_test_split else 0)
    synthetic = d.source == "synthetic"
    search = d.search_holdout or (d.synthetic.num_search if synthetic else 0)
    test = (d.synthetic.num_test if synthetic else s.test_split_images) if d.has_test_split else 0
    return search, test


def _eval_images(study: StudyConfig, trial: tuple[Branch, ...], counts: DataCounts | None) -> int:
    """Images one trial of these branches evaluates: the trunk every ``eval_period`` up to
    its last fork (search split), then each schedule's final (search and test splits)."""
    search, test = split_sizes(study, counts)
    trunk = trial[-1].fork // study.eval_period if study.eval_period else 0
    return trunk * search + len(trial) * (search + test)


def eval_gpu_hours(plan: Plan, gpu: str) -> float | None:
    """GPU-hours of the plan's evaluations on ``gpu``: images x (GPU-seconds per image, plus
    the CPU work the GPUs wait for: each rank encodes its own images, rank 0 runs COCOeval
    while every GPU of the trial waits); None if the GPU's inference speed is unknown."""
    s = plan.study
    seconds = s.eval_seconds_per_image.get(gpu)
    if seconds is None:
        return None
    waiting = s.encode_seconds_per_image + s.cocoeval_seconds_per_image * plan.gpus_per_trial
    return plan.expected_eval_images * (seconds + waiting) / 3600


def gpu_hours(plan: Plan, seconds_per_iteration: float) -> float:
    """Expected iterations (branches included) x step time x GPUs per trial (before early stopping)."""
    return plan.expected_iterations * seconds_per_iteration * plan.gpus_per_trial / 3600
