"""The dry-run plan in words: what ``--dry-run`` and a starting study print
(study/plan/estimate.py computes it). Pure; no Ray.
"""

from __future__ import annotations

import dataclasses
import os

from analysis.stats import regime
from study.plan.epochs import epoch_lines, epoch_warnings
from study.plan.estimate import Plan, eval_gpu_hours, gpu_hours, split_sizes
from study.plan.regime_points import regime_points
from study.spec.resolved import ArmSpec, ResolvedStudy
from study.spec.step_times import provenance
from study.spec.study_config import NOISE_GAPS, StudyConfig, selector_matches, startup_trials


def _splits_line(s: StudyConfig) -> str:
    """Which images decide (search split) and which only report (test split)."""
    d = s.data
    synthetic = d.source == "synthetic"
    if d.search_holdout:
        search = f"{d.search_holdout:,} images held out of the training images"
    else:
        search = f"{d.synthetic.num_search} generated images" if synthetic else os.path.basename(d.search_annotations)
    if not d.has_test_split:
        test = "none (the report's numbers are the search split's)"
    else:
        test = f"{d.synthetic.num_test} generated images" if synthetic else os.path.basename(d.test_annotations)
    return (
        f"  splits: search (Optuna, early stopping, best trial) = {search}; "
        f"test (each schedule's final result, reported only) = {test}"
    )


def _data_lines(plan: Plan) -> list[str]:
    """What the training file holds, where it was counted, and 1x in epochs."""
    s, c = plan.study, plan.counts
    lines = []
    if c is not None and s.data.source == "coco":
        held = f", after {s.data.search_holdout:,} held out for the search split" if s.data.search_holdout else ""
        left = (
            f"; {c.left_out_annotations:,} annotation(s) with a box under 1 px left out"
            if c.left_out_annotations
            else ""
        )
        lines.append(
            f"  data (counted in {os.path.basename(s.data.train_annotations)}): {c.listed_images:,} images listed, "
            f"{c.trainable_images:,} with a trainable box{held} ({c.trainable_instances:,} instances), "
            f"{c.categories} categories{left}; search split {c.search_images or 0:,} images, test split "
            + (f"{c.test_images:,} images" if c.test_images else "none")
        )
    if s.solver.epochs_per_1x and c is not None:
        batch = s.num_workers * s.solver.ims_per_worker
        lines.append(
            f"  1x derived: solver.epochs_per_1x={s.solver.epochs_per_1x:g} epochs x {c.trainable_images:,} training "
            f"images / batch {batch} = {s.solver.base_iters:,} iterations"
        )
    return [*lines, *epoch_lines(plan.resolved, c), *epoch_warnings(plan.resolved, c)]


def _pretraining_line(s: StudyConfig) -> list[str]:
    """Where the pretrained arms' generated backbone comes from (none for given weights)."""
    generated = [m for m in s.axes.model if m not in s.pretrained_weights]
    if s.pretrain is None or "pretrained" not in s.axes.init or not generated:
        return []
    p = s.pretrain
    return [
        f"  pretraining (the stand-in for ImageNet): {p.num_classes}-class generated shapes at {p.image_size} px, "
        f"{p.iterations:,} iterations x {p.batch_size} ({p.images_seen:,} images seen); the toy's own spec "
        "ships with the package for seeds 0-2 (trainables/pretraining/standin/), any other is pretrained once per "
        "backbone by the first pretrained trial that loads it, on its own CPU, then cached"
    ]


def format_plan(plan: Plan) -> str:
    return "\n".join([*_study_lines(plan), *_arm_lines(plan), *_override_lines(plan), *_cost_lines(plan)])


def _study_lines(plan: Plan) -> list[str]:
    """The study-wide settings: arms, resources, 1x, splits, search, verdict, margins, regime."""
    s = plan.study
    batch = s.num_workers * s.solver.ims_per_worker
    return [
        f"study preset {s.name}: {s.description}",
        f"  arms: {len(plan.arms)}, trials: {plan.total_trials} ({plan.arms[0].trials} per arm), "
        f"objective {s.objective}",
        f"  per trial: {plan.workers_per_trial} Ray Train worker{'s' if plan.workers_per_trial > 1 else ''} "
        f"x ({s.cpus_per_worker} CPU{', 1 GPU' if s.use_gpu else ''}), {s.solver.ims_per_worker} images/worker "
        f"= batch {batch}" + (f"; {plan.gpus_per_trial} GPUs per trial" if s.use_gpu else ""),
        f"  concurrency: {plan.max_concurrent} trial(s) at once ({plan.capacity})",
        f"  1x = {s.solver.base_iters} iterations of {batch} images ({s.solver.base_iters * batch:,} images); "
        + (f"the trunk is evaluated every {s.eval_period} iterations, " if s.eval_period else "")
        + "each schedule at its end",
        *_data_lines(plan),
        _splits_line(s),
        *_pretraining_line(s),
        _search_line(s),
        *_replicates_line(s),
        _early_stopping_line(s),
        "  verdict (primary: each init's recipe against the other's, the paper's design): scratch is no worse than "
        "pretrained at a schedule when the 90% interval of the gap over seeds lies above -δ (one-sided Welch "
        "test at 5%); equivalence and a difference either way stand beside it"
        + ("" if s.replicates > 1 else " (needs --replicates K: one seed gives no interval)"),
        "  non-inferiority margins δ, fixed before the run:",
        *[
            f"    {spec.arm.model}, data fraction {spec.arm.data_fraction:g}: {spec.margin.describe()}"
            for spec in _one_per_comparison(plan.resolved)
        ],
        "  regime (paper Sec. 5.2: how much target data against what pretraining saw):",
        *[f"    {regime.describe(p)}" for p in regime_points(plan.resolved, plan.counts)],
        *[f"    paper: {line}" for line in regime.paper_lines()],
    ]


def _one_per_comparison(resolved: ResolvedStudy) -> list[ArmSpec]:
    """One arm per (model, data fraction), in the preset's order: both inits share its margin."""
    seen: dict[tuple[str, float], ArmSpec] = {}
    for spec in resolved.arms:
        seen.setdefault((spec.arm.model, spec.arm.data_fraction), spec)
    return list(seen.values())


def _arm_lines(plan: Plan) -> list[str]:
    """Each arm's trials, schedules, ranges and iterations; the recipes' trunks and branches."""
    lines = [
        "",
        f"  {'arm':<26} {'trials':>6} {'schedules':<14} {'lr range':<17} {'wd range':<17} {'iterations':>11}",
    ]
    for a in plan.arms:
        space = a.spec.space
        lines.append(
            f"  {a.arm.name:<26} {a.trials:>6} {','.join(f'{x:.3g}x' for x in a.schedules):<14} "
            f"{space.lr[0]:.3g}-{space.lr[1]:<11.3g} {space.weight_decay[0]:.2g}-{space.weight_decay[1]:<11.2g} "
            f"{a.expected_iterations:>11,}"
        )
    lines.append(f"  expected iterations (no early stopping): {plan.expected_iterations:,}")
    lines.append("")
    lines.append("  every trial trains one peak-LR trunk and scores each schedule of its arm up to its own on a")
    lines.append("  cooled-down branch (the first LR drop onwards); the recipe's trial runs the whole set:")
    for a in plan.arms:
        lines.append(
            f"    {a.arm.name:<26} recipe {a.recipe_schedule:g}x (lr {a.recipe_lr:g}): {_k(a.recipe_iterations)} "
            f"iterations with "
            f"branches, {_k(a.recipe_independent)} as separate runs of "
            f"{', '.join(f'{x:.3g}x' for x in a.schedules if x <= a.recipe_schedule)}"
        )
    return lines


def _override_lines(plan: Plan) -> list[str]:
    """The per-arm solver and data settings, and what branches do to a trial's length."""
    overridden = [
        (a.arm.name, changes)
        for a in plan.arms
        for selector, changes in plan.study.trial_overrides
        if selector_matches(selector, dataclasses.asdict(a.arm))
    ]
    lines = []
    if overridden:
        lines.append("  per-arm solver and data settings (trial_overrides):")
        for name, changes in overridden:
            lines.append(f"    {name:<26} " + ", ".join(f"{k}={_short(v)}" for k, v in changes.items()))
    lines.append(
        f"  longest trial: {_k(plan.longest_trial)} iterations; branches make a trial longer than its "
        f"longest schedule (one\n  worker group runs them one after another) and the study cheaper"
    )
    return lines


def _cost_lines(plan: Plan) -> list[str]:
    """GPU-hours per GPU type, where the preset cites step times."""
    s = plan.study
    if not (s.use_gpu and s.seconds_per_iteration):
        return []
    batch = s.num_workers * s.solver.ims_per_worker
    lines = [
        "",
        f"  cost estimate ({plan.gpus_per_trial} GPUs per trial; seconds per iteration of the whole "
        f"{batch}-image step, each measured, cited or derived as its line says (study/spec/step_times.py); "
        "override with --set seconds_per_iteration.GPU=S):",
    ]
    for gpu, seconds in sorted(s.seconds_per_iteration.items()):
        train = gpu_hours(plan, seconds)
        evaluation = eval_gpu_hours(plan, gpu)
        hours = train + (evaluation or 0.0)
        alone = plan.expected_independent * seconds * plan.gpus_per_trial / 3600
        share = (
            f"evaluation {evaluation:,.0f} of them ({evaluation / hours:.1%}: {s.eval_seconds_per_image[gpu]:g} s "
            f"per image on the GPU, {s.encode_seconds_per_image:g} s encoding, {s.cocoeval_seconds_per_image:g} s "
            f"COCOeval)"
            if evaluation is not None
            else "evaluation not counted (no eval_seconds_per_image for it)"
        )
        lines.append(
            f"    {gpu:<6} {seconds:.3f} s/iter -> {hours:,.0f} GPU-hours, {share}; "
            f"{hours / plan.gpus_per_trial / plan.max_concurrent:,.0f} h wall clock at "
            f"{plan.max_concurrent} trial(s) at once (training with every schedule run separately: "
            f"{alone:,.0f} GPU-hours); longest trial "
            f"{plan.longest_trial * seconds / 3600:,.0f} h of training"
        )
        lines.append(f"           {gpu} figure {provenance(gpu, seconds)}")
    search, test = split_sizes(s, plan.counts)
    lines.append(
        f"  evaluation: {plan.expected_eval_images:,} images ({search:,} per search-split and "
        f"{test:,} per test-split pass: the trunk's evaluations and every schedule's final)"
    )
    return lines


def _replicates_line(s: StudyConfig) -> list[str]:
    if s.replicates <= 1:
        return []
    k = s.replicates
    if not s.replicate_best:
        return [
            f"  replicates: after the search, each arm's recipe under seeds {s.seed}-{s.seed + k - 1} (its search "
            f"trial counts: the recipe was never chosen), trunk to the longest schedule: {k - 1} more trials per arm, "
            "none stopped early; the best of the search is not rerun (replicate_best: false)"
            + ("; each seed loads a backbone pretrained with its own seed" if s.pretrain is not None else "")
        ]
    return [
        f"  replicates: after the search, each arm's recipe under seeds {s.seed}-{s.seed + k - 1} (its search "
        f"trial counts: the recipe was never chosen) and its best (lr, wd) under fresh seeds {s.seed + 1}-{s.seed + k} "
        "(never the seed whose trial won the choice; a best that is the recipe reads the recipe's other seeds; "
        "none where the search scores one configuration), trunk to "
        f"the longest schedule: up to {2 * k - 1} more trials per arm, none stopped early"
        + ("; each seed loads a backbone pretrained with its own seed" if s.pretrain is not None else "")
    ]


def _early_stopping_line(s: StudyConfig) -> str:
    e = s.early_stopping
    if not e.enabled:
        return "  early stopping: off"
    return (
        f"  early stopping: rungs at the schedules of each arm, reduction {e.reduction_factor}; a trial stops only "
        f"more than z_0.95 x sqrt(2) x σ = {NOISE_GAPS * e.seed_std:.3g} AP below a rung's cutoff (σ = "
        f"{e.seed_std:g}, the prior seed std; measured instead where seeds of one configuration exist), and the "
        "recipe never"
    )


def _k(n: int) -> str:
    """780000 -> "780k", 1800000 -> "1.8M" (exact), else with separators."""
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1e6:g}M"
    return f"{n // 1000}k" if n >= 10_000 and n % 1000 == 0 else f"{n:,}"


def _search_line(study: StudyConfig) -> str:
    """How Optuna picks each arm's trials, and whether its TPE model gets to work.

    TPE samples at random until an arm's study holds ``startup_trials`` distinct (lr, weight
    decay) configurations (study/hpo/sampler.py); the recipe is one, however many schedules it
    scores.
    """
    n, num = startup_trials(study.num_samples), study.num_samples
    line = (
        f"  search: the recipe, then Optuna TPE, which samples at random until an arm has {n} finished "
        "configurations (lr, weight decay; the recipe is one, whatever schedules it scores)"
    )
    if num <= n:
        line += f"; with {num} trial(s) per arm TPE will not model yet (--num-samples {n + 1} or more)"
    else:
        line += f"; TPE picks trials {n + 1}-{num} of each arm"
    return line


def _short(value) -> str:
    """A setting for one line: long lists as their first and last value."""
    if isinstance(value, (list, tuple)) and len(value) > 3:
        return f"[{value[0]}, ..., {value[-1]}] ({len(value)} values)"
    return str(value)
