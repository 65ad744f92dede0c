"""What a study's data holds, counted from its files the way the trials choose images.

The plan prints these counts, the schedule stated in epochs is derived from them
(study/spec/study_config.py's ``in_epochs``), and the regime indicators place each data
fraction against the paper's (analysis/stats/regime.py). No torch here: the driver's
pre-flight checks count before Ray starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from trainables.contract.trial_config import DataConfig
from trainables.data.splits import held_out_ids, select_subset


@dataclass(frozen=True)
class DataCounts:
    """A study's training file counted (and its evaluation splits, where read)."""

    listed_images: int  # every image the training file lists
    # Images with a trainable box, less the held-out search split: what fraction 1 trains on.
    trainable_images: int
    trainable_instances: int  # their non-crowd annotations with a box of at least 1 px
    categories: int
    # Non-crowd annotations with a box under 1 px wide or high: training leaves them out.
    left_out_annotations: int
    # fraction -> (training images, instances) of that fraction's seeded subset.
    per_fraction: Mapping[float, tuple[int, int]]
    search_images: int | None = None  # None: its file was not read (or it is held out)
    test_images: int | None = None  # None: not read, or the study has no test split

    def fraction(self, fraction: float) -> tuple[int, int]:
        return self.per_fraction[float(fraction)]

    def with_splits(self, search: int | None, test: int | None) -> DataCounts:
        return dataclasses.replace(self, search_images=search, test_images=test)


def trainable(ann: dict[str, Any]) -> bool:
    """A non-crowd annotation whose box is at least one pixel wide and high
    (trainables/data/dataset.py trains on these alone)."""
    return not ann.get("iscrowd", 0) and ann["bbox"][2] >= 1 and ann["bbox"][3] >= 1


def count_training(blob: dict[str, Any], data: DataConfig, fractions: Iterable[float]) -> DataCounts:
    """Count a COCO-format training file as the trials read it: the held-out search split
    removed, then each fraction's seeded subset of the images with a trainable box. For a
    keypoint task the images and instances are an upper bound (training also skips images
    without a labelled keypoint)."""
    per_image: dict[int, int] = {}
    left_out = 0
    for a in blob["annotations"]:
        if trainable(a):
            per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
        elif not a.get("iscrowd", 0):
            left_out += 1
    pool = sorted(per_image)
    if data.search_holdout:
        held = set(held_out_ids([i["id"] for i in blob["images"]], data.search_holdout, data.subset_seed))
        pool = [i for i in pool if i not in held]
    per_fraction = {}
    for fraction in fractions:
        ids = select_subset(pool, fraction, data.subset_seed, of=data.fraction_of_images)
        per_fraction[float(fraction)] = (len(ids), sum(per_image[i] for i in ids))
    return DataCounts(
        listed_images=len(blob["images"]),
        trainable_images=len(pool),
        trainable_instances=sum(per_image[i] for i in pool),
        categories=len(blob.get("categories", [])),
        left_out_annotations=left_out,
        per_fraction=per_fraction,
    )
