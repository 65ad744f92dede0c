"""The three splits of a study's data (training, search, test) and what keeps them apart.

The search split scores every decision: Optuna's search, early stopping, and the choice of
each arm's best trial. The test split scores only what the report states, at every
schedule's final result, so a best-of-N picked on the search split is not also graded on
it (the selection bias a held-out test set removes). For COCO the test split is val2017,
where the paper reports (Sec. 4.1), and the search split is 5,000 images held out of
train2017 (``data.search_holdout``), which then trains on 113,287 images. The generated
data has a search and a test split of its own (trainables/data/synthetic.py).

No torch here: the study's pre-flight checks use it too.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainables.contract.errors import InputError
from trainables.contract.trial_config import ConfigError, DataConfig

SEARCH, TEST = "search", "test"


@dataclass(frozen=True)
class DataPaths:
    """Files of the three splits. A held-out search split (``search_holdout`` > 0) lives in
    the training files; no test split: empty test paths."""

    train_images: str
    train_annotations: str
    search_images: str
    search_annotations: str
    search_holdout: int
    test_images: str
    test_annotations: str

    @property
    def has_test(self) -> bool:
        return bool(self.test_annotations)

    def field(self, split: str, what: str) -> str:
        """The config field that names a split's ``what`` ("images" or "annotations")."""
        if split == SEARCH and self.search_holdout:
            return f"data.train_{what}"
        return f"data.{split}_{what}"


def check_splits(data: DataConfig) -> None:
    """The fields that define the splits agree with each other (each field alone is checked
    by DataConfig; these are checked once all ``--set`` overrides are in)."""
    if data.search_holdout and (data.search_images or data.search_annotations):
        raise ConfigError(
            f"data.search_holdout={data.search_holdout} and data.search_images/search_annotations are both "
            f"given: one search split, either held out of the training images or its own files",
            "data.search_holdout",
        )
    if bool(data.test_images) != bool(data.test_annotations):
        given, lacking = (
            ("test_images", "test_annotations") if data.test_images else ("test_annotations", "test_images")
        )
        raise ConfigError(f"data.{given} is given without data.{lacking}: the test split needs both", f"data.{lacking}")
    if data.source == "synthetic" and not data.search_holdout and data.synthetic.num_search < 1:
        raise ConfigError(
            "data.synthetic.num_search=0 leaves no search split: generate one, or set data.search_holdout",
            "data.synthetic.num_search",
        )


def resolve_data(data: DataConfig) -> DataPaths:
    """The splits' files: generated (and cached) for the synthetic source, else as given."""
    check_splits(data)
    if data.source == "synthetic":
        from trainables.data.synthetic import ensure_dataset  # draws images: only where data is needed

        p = ensure_dataset(data.synthetic)
        # The generated files, then the same rules as given files (a hold-out applies alike).
        data = dataclasses.replace(
            data,
            train_images=str(p.train_images),
            train_annotations=str(p.train_annotations),
            search_images="" if data.search_holdout else str(p.search_images),
            search_annotations="" if data.search_holdout else str(p.search_annotations),
            test_images=str(p.test_images) if data.synthetic.num_test else "",
            test_annotations=str(p.test_annotations) if data.synthetic.num_test else "",
        )
    search = (
        (data.train_images, data.train_annotations)
        if data.search_holdout
        else (data.search_images, data.search_annotations)
    )
    return DataPaths(
        data.train_images,
        data.train_annotations,
        *search,
        data.search_holdout,
        data.test_images,
        data.test_annotations,
    )


def held_out_ids(image_ids: Iterable[int], count: int, seed: int) -> list[int]:
    """``count`` of the images, drawn by a seeded permutation: the held-out search split.

    Drawn from every listed image (COCO's val2017 also keeps images without objects), with
    a stream of its own, so the data-fraction subsets (trainables/data/dataset.py's
    ``select_subset``, on the images left) do not depend on it. Too few images for it to
    leave any training image is an error naming ``data.search_holdout``.
    """
    ids = sorted(image_ids)
    if count >= len(ids):
        raise InputError(
            f"data.search_holdout={count} would hold out all {len(ids)} training images; "
            f"hold out fewer, or give the search split its own files (data.search_annotations)",
            "data.search_holdout",
        )
    order = np.random.default_rng((seed, 1)).permutation(len(ids))
    return sorted(ids[i] for i in order[:count])


def subset_blob(blob: dict[str, Any], image_ids: Iterable[int]) -> dict[str, Any]:
    """A COCO dict with only ``image_ids`` and their annotations (categories and the rest kept)."""
    keep = set(image_ids)
    return {
        **blob,
        "images": [img for img in blob["images"] if img["id"] in keep],
        "annotations": [a for a in blob["annotations"] if a["image_id"] in keep],
    }


def check_disjoint(splits: dict[str, tuple[str, Iterable[str], str]]) -> None:
    """No image file is in two splits; ``splits``: name -> (image folder, file names, field).

    Files are compared by their resolved path, so two annotation files that list the same
    folder's images (a test split that is really the training images) are caught, and two
    folders' files of the same name are not confused.
    """
    owner: dict[str, str] = {}
    for name, (images_dir, file_names, field) in splits.items():
        root = os.path.realpath(images_dir)
        shared = []
        for file_name in file_names:
            path = os.path.join(root, file_name)
            first = owner.setdefault(path, name)
            if first != name:
                shared.append((first, path))
        if shared:
            first, path = shared[0]
            more = f" and {len(shared) - 1} more" if len(shared) > 1 else ""
            raise InputError(
                f"the {name} split shares images with the {first} split ({path}{more}; set by {field}): "
                f"a split that decides or reports must not hold training or each other's images",
                field,
            )


def splits_record(paths: DataPaths, search_ids: list[int], test_ids: list[int]) -> dict[str, Any]:
    """What a study writes beside its subsets: each split's source and image ids."""
    return {
        SEARCH: {
            "annotations": paths.search_annotations,
            "held_out_of_training": paths.search_holdout > 0,
            "images": len(search_ids),
            "image_ids": search_ids,
        },
        TEST: (
            {"annotations": paths.test_annotations, "images": len(test_ids), "image_ids": test_ids}
            if paths.has_test
            else None
        ),
    }


def select_subset(image_ids: list[int], fraction: float, seed: int, of: int = 0) -> list[int]:
    """A fixed, seeded subset of ``round(fraction * of)`` of the images (at least one, at
    most all); ``of`` = 0 counts the images given.

    The subset is the start of one seeded permutation of the images, so the same (ids,
    seed) gives the same images whichever process asks (every arm at one data fraction
    trains on the same images) and a smaller fraction's subset lies inside a larger one's
    (paper Sec. 5.2: 1k within 3.5k within 10k within 35k). With ``of`` = 118,287 (COCO
    train2017, as the paper counts) the fractions n / 118,287 give exactly n images,
    counted on the images that are trained on.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"data_fraction must be in (0, 1], got {fraction}")
    ids = sorted(image_ids)
    k = min(len(ids), max(1, round(fraction * (of or len(ids)))))
    if k == len(ids):
        return ids
    order = np.random.default_rng(seed).permutation(len(ids))
    return sorted(ids[i] for i in order[:k])
