"""A study's schedules in epochs of each data fraction's training images, against the range
the paper trained in. Pure; no Ray.

The paper's schedules run from 12.2 epochs (1x on COCO train2017: 90k iterations of 16
images over 118,287 images, Sec. 4.1) to 352 (the 10k-image subset trained from scratch for
220k iterations, Sec. 5.2). A schedule far outside that range is allowed but warned about:
much shorter and scratch has had no chance to catch up (the paper's point is that it needs
longer); much longer and every init may overfit a small set (Sec. 5.2's 1k-image runs).
"""

from __future__ import annotations

from study.plan.regime_points import expected_images
from study.spec.resolved import ResolvedStudy
from trainables.data.census import DataCounts

PAPER_EPOCHS = (12.17, 352.0)
# How far past the paper's range a schedule goes before the plan warns.
FAR = 2.0


def fraction_images(resolved: ResolvedStudy, counts: DataCounts | None) -> dict[float, int]:
    """Each data fraction's training images: counted where the training file was read,
    else as the trials choose them from the generated data; none for an unread COCO file."""
    s = resolved.study
    if counts is not None:
        return {float(f): counts.fraction(f)[0] for f in s.axes.data_fraction}
    if s.data.source != "synthetic":
        return {}
    return {float(f): expected_images(s, f) for f in s.axes.data_fraction}


def epochs(resolved: ResolvedStudy, images: int, schedule: float) -> float:
    """Epochs of ``images`` a schedule trains (N x = N x base_iters iterations of the global batch)."""
    s = resolved.study
    return schedule * s.solver.base_iters * s.num_workers * s.solver.ims_per_worker / images


def _schedules(resolved: ResolvedStudy, fraction: float) -> list[float]:
    return sorted({x for spec in resolved.arms if spec.arm.data_fraction == fraction for x in spec.schedules})


def epoch_lines(resolved: ResolvedStudy, counts: DataCounts | None) -> list[str]:
    """The plan's lines: 1x in epochs, each fraction's schedules in epochs."""
    images = fraction_images(resolved, counts)
    if not images:
        return []
    lo, hi = PAPER_EPOCHS
    toy = " (the generated toy's were set by its own plateaus)" if resolved.study.data.source == "synthetic" else ""
    lines = [f"  schedules in epochs of each fraction's training images (the paper's: {lo:g} to {hi:g}){toy}:"]
    for fraction, n in images.items():
        parts = [f"{x:g}x {epochs(resolved, n, x):.3g}" for x in _schedules(resolved, fraction)]
        lines.append(f"    data fraction {fraction:g} ({n:,} images): {', '.join(parts)}")
    return lines


def epoch_warnings(resolved: ResolvedStudy, counts: DataCounts | None) -> list[str]:
    """One warning per data fraction whose schedules all lie far outside the paper's range,
    for a COCO-format source (the generated toy's schedules were set by its own plateaus,
    docs/toy_calibration.md)."""
    if resolved.study.data.source != "coco":
        return []
    lo, hi = PAPER_EPOCHS
    warnings = []
    for fraction, n in fraction_images(resolved, counts).items():
        schedules = _schedules(resolved, fraction)
        if not schedules:
            continue
        shortest, longest = epochs(resolved, n, schedules[0]), epochs(resolved, n, schedules[-1])
        if longest < lo / FAR:
            warnings.append(
                f"WARNING: data fraction {fraction:g} ({n:,} images): its longest schedule, {schedules[-1]:g}x, is "
                f"{longest:.3g} epochs, under half the paper's shortest ({lo:g}, 1x on COCO): scratch has had no "
                "chance to catch up; lengthen 1x (solver.epochs_per_1x or solver.base_iters) or the schedules"
            )
        elif shortest > hi * FAR:
            warnings.append(
                f"WARNING: data fraction {fraction:g} ({n:,} images): its shortest schedule, {schedules[0]:g}x, is "
                f"{shortest:.3g} epochs, over twice the paper's longest ({hi:g}, its 10k-image subset at 220k "
                "iterations): every init may overfit; shorten 1x or the schedules"
            )
    return warnings
