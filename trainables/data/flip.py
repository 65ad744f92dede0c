"""A training item flipped horizontally (the sampler decides which, trainables/data/dataset.py):
its image, boxes, masks and keypoints (left and right swap by the dataset's flip_index)."""

from __future__ import annotations

from typing import Any

import torch

from trainables.data.keypoints import hflip_keypoints


def hflip(
    image: torch.Tensor, target: dict[str, Any], flip_index: list[int] | None = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The image and its target flipped horizontally; keypoints (if any) swap sides by
    ``flip_index`` (trainables/data/keypoints.py)."""
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    flipped = {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}
    if "keypoints" in target:
        if flip_index is None:
            raise ValueError("a target with keypoints needs the dataset's flip_index to be flipped")
        flipped["keypoints"] = hflip_keypoints(target["keypoints"], width, flip_index)
    return image.flip(-1), flipped
