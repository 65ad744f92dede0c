"""Regime indicators: where a study's data and budget sit among the paper's regimes.

The paper's answer depends on how much target data there is against what pretraining saw
(Sec. 5.2): on all of COCO train2017 scratch caught up (Table 1), on a 10k-image subset it
matched, on 3.5k and 1k images it broke down. Two ratios place a study among those points,
for any data:

- distinct pretraining images per target training instance (ImageNet's 1.28M images
  against train2017's 860k instances is about 1.5; the 3.5k subset about 50);
- images scratch sees at its longest schedule per image pretraining saw (6x on COCO is
  8.64M images against ImageNet's 128M seen in 100 epochs, about 0.07).

The same ratios per target image stand beside them where instances are not counted yet.
Pure numbers: the plan (before anything runs) and the report (from what ran) both use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

IMAGENET_IMAGES = 1_281_167  # ILSVRC-2012 train
IMAGENET_SEEN = 100 * IMAGENET_IMAGES  # Sec. 4.1: "1.28M images x 100 epochs"
COCO_TRAIN_IMAGES = 118_287  # train2017
COCO_TRAIN_INSTANCES = 860_001  # the object annotations of instances_train2017.json
BATCH = 16  # 8 GPUs x 2 images (Sec. 4.1)


@dataclass(frozen=True)
class Point:
    """One regime: the paper's, or a study's (model, data fraction)."""

    name: str
    train_images: int
    train_instances: int | None  # None: not counted (yet)
    pretrain_images: int | None  # distinct; None: unknown
    pretrain_seen: int | None
    scratch_seen: int | None  # images scratch sees at its longest schedule
    outcome: str = ""
    key: tuple[str, float] | None = None  # a study's (model, data fraction)

    def per_instance(self) -> float | None:
        if not self.pretrain_images or not self.train_instances:
            return None
        return self.pretrain_images / self.train_instances

    def per_image(self) -> float | None:
        return self.pretrain_images / self.train_images if self.pretrain_images and self.train_images else None

    def seen_ratio(self) -> float | None:
        return self.scratch_seen / self.pretrain_seen if self.scratch_seen and self.pretrain_seen else None


def _subset(n: int, scratch_iterations: int | None, outcome: str) -> Point:
    # A subset's instances at train2017's mean per image (derived, not published).
    return Point(
        f"{n:,}-image subset (Sec. 5.2)",
        n,
        round(n * COCO_TRAIN_INSTANCES / COCO_TRAIN_IMAGES),
        IMAGENET_IMAGES,
        IMAGENET_SEEN,
        scratch_iterations * BATCH if scratch_iterations else None,
        outcome,
    )


PAPER = (
    Point(
        "COCO train2017 (Table 1)",
        COCO_TRAIN_IMAGES,
        COCO_TRAIN_INSTANCES,
        IMAGENET_IMAGES,
        IMAGENET_SEEN,
        6 * 90_000 * BATCH,
        "scratch caught up by 6x (41.3 vs 41.1)",
    ),
    # Sec. 5.2: scratch's best 10k result came at 220k iterations.
    _subset(10_000, 220_000, "scratch matched (25.9 vs 26.0)"),
    _subset(3_500, None, "scratch broke down (9.3 vs 16.0)"),
    _subset(1_000, None, "scratch broke down (5.4 vs 9.9, its own search)"),
)


def nearest(point: Point) -> Point | None:
    """The paper's regime closest to ``point`` in distinct pretraining images per target
    instance (per image where instances are not counted), on a log scale."""
    mine, theirs = (point.per_instance(), Point.per_instance)
    if mine is None:
        mine, theirs = (point.per_image(), Point.per_image)
    if mine is None:
        return None
    return min(PAPER, key=lambda p: abs(math.log(mine / theirs(p))))


def _ratio(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.3g}"


def describe(point: Point) -> str:
    """One line: the counts, the two ratios, and the paper's nearest regime."""
    instances = f"{point.train_instances:,} instances" if point.train_instances else "instances not counted yet"
    pretrain = (
        f"pretraining {point.pretrain_images:,} distinct images, {point.pretrain_seen:,} seen"
        if point.pretrain_images and point.pretrain_seen
        else "no pretraining images known"
    )
    scratch = f"scratch sees {point.scratch_seen:,} images at its longest schedule" if point.scratch_seen else ""
    close = nearest(point)
    where = f"; nearest the paper's {close.name}, where {close.outcome}" if close is not None else ""
    return (
        f"{point.name}: {point.train_images:,} training images, {instances}; {pretrain}"
        + (f"; {scratch}" if scratch else "")
        + f". Pretraining images per training instance {_ratio(point.per_instance())} (per image "
        f"{_ratio(point.per_image())}); scratch's images seen per pretraining image seen {_ratio(point.seen_ratio())}"
        + where
    )


def paper_lines() -> list[str]:
    """The paper's regimes, one line each, in the same ratios."""
    return [
        f"{p.name}: {p.train_images:,} images, {p.train_instances:,} instances"
        + (" (at train2017's mean per image)" if p.train_images != COCO_TRAIN_IMAGES else "")
        + f"; per instance {_ratio(p.per_instance())} (per image {_ratio(p.per_image())}); "
        f"scratch's seen ratio {_ratio(p.seen_ratio())}; {p.outcome}"
        for p in PAPER
    ]
