"""Keypoints of a COCO-format dataset for a keypoint task: their names, the training
targets' (N, K, 3) arrays, their horizontal flip, and which images train.

COCO stores an object's keypoints as ``[x1, y1, v1, ..., xK, yK, vK]`` in the order its
category's ``keypoints`` names them, with v = 0 unlabelled, 1 labelled but hidden, 2
visible. torchvision's Keypoint R-CNN takes them as an (N, K, 3) float tensor per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pycocotools.coco import COCO

from trainables.contract.errors import InputError


def keypoint_names(coco: COCO) -> tuple[str, ...]:
    """The keypoints' names, shared by every category that has keypoints (COCO person
    keypoints has the one category, ``person``, with 17)."""
    named = {tuple(c["keypoints"]) for c in coco.loadCats(coco.getCatIds()) if c.get("keypoints")}
    if len(named) != 1:
        found = "no category lists" if not named else f"{len(named)} different lists of"
        raise InputError(
            f"a keypoint task needs one list of keypoint names in the categories' 'keypoints'; {found} them",
            "data.train_annotations",
        )
    return named.pop()


def flip_index(names: Sequence[str]) -> list[int]:
    """For each keypoint, the one it becomes in a horizontally flipped image: ``left_*`` and
    ``right_*`` swap (COCO's names; detectron2's ``KEYPOINT_FLIP_MAP`` pairs them so), any
    other keeps its place."""
    where = {name: i for i, name in enumerate(names)}
    out = []
    for name in names:
        side, _, rest = name.partition("_")
        mirror = {"left": "right", "right": "left"}.get(side)
        out.append(where.get(f"{mirror}_{rest}", where[name]) if mirror else where[name])
    return out


def keypoint_array(annotations: Sequence[dict], k: int) -> torch.Tensor:
    """The (N, K, 3) keypoints of ``annotations`` (zeros where one has none)."""
    rows = [a.get("keypoints") or [0.0] * (3 * k) for a in annotations]
    bad = [a.get("id") for a, row in zip(annotations, rows) if len(row) != 3 * k]
    if bad:
        raise InputError(f"annotation(s) {bad[:5]} do not have {k} keypoints (x, y, v each)", "data.train_annotations")
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, k, 3)


def hflip_keypoints(keypoints: torch.Tensor, width: int, index: Sequence[int]) -> torch.Tensor:
    """Keypoints of the image flipped horizontally: mirrored x, left and right swapped, and
    unlabelled ones kept all zero (torchvision's references/detection/transforms.py)."""
    out = keypoints[:, list(index)].clone()
    out[..., 0] = width - out[..., 0]
    out[out[..., 2] == 0] = 0
    return out


def trains_keypoints(annotations: Sequence[dict]) -> bool:
    """Whether an image teaches the keypoint task: at least one labelled keypoint on a
    non-crowd object (detectron2's MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE = 1);
    images without people are skipped in training."""
    return any(not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0 for a in annotations)


def keypoint_sigmas(coco: COCO) -> tuple[float, ...] | None:
    """The OKS sigma of each keypoint, from the categories' ``keypoint_sigmas`` (where the
    generated data states them); None for COCO's 17 person keypoints, whose sigmas the
    evaluators know. Any other keypoint set must state its own."""
    names = keypoint_names(coco)
    stated = {tuple(c["keypoint_sigmas"]) for c in coco.loadCats(coco.getCatIds()) if c.get("keypoint_sigmas")}
    if not stated:
        if len(names) == 17:
            return None
        raise InputError(
            f"{len(names)} keypoints need their OKS sigmas in the category's 'keypoint_sigmas' "
            "(COCO's evaluator knows only those of its 17 person keypoints)",
            "data.train_annotations",
        )
    sigmas = stated.pop()
    if stated or len(sigmas) != len(names) or not all(s > 0 for s in sigmas):
        raise InputError(
            f"'keypoint_sigmas' must be one list of {len(names)} positive values, one per keypoint",
            "data.train_annotations",
        )
    return tuple(float(s) for s in sigmas)
