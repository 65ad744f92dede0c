"""Training masks between the loader and the model: cropped for the hand-off, whole on the device.

A training target's masks are (N, H, W) uint8 at its image's size, and mostly zeros: an
instance covers a small part of its image (COCO-shaped images of 640 px with 6.8 instances
carry 1.67 MB of masks against 0.75 MB of uint8 image, 0.14 MB as crops; benchmarks/
README.md). The loader's collate (trainables/data/dataset.py) hands each instance's
smallest rectangle that holds all its pixels instead (``mask_crops``, with the rectangle's
top-left corner in ``mask_at`` and the image's size in ``mask_size``: Python ints, so they
stay on the host while the crops travel), and the model's transform
(trainables/model/mask_rcnn.py) pastes them into zeros on its device before its resize:
the same masks, bit for bit, for a fraction of the bytes through the workers' shared
memory, the pinned copy and the bus. Nothing here reads a device tensor back.
"""

from __future__ import annotations

from typing import Any

import torch

HANDOFF_KEYS = ("mask_crops", "mask_at", "mask_size")


def crop_masks(target: dict[str, Any]) -> dict[str, Any]:
    """``target`` with its (N, H, W) ``masks`` handed as crops (unchanged without masks)."""
    masks = target.get("masks")
    if masks is None:
        return target
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    crops, at = [], []
    for mask, r, c in zip(masks, rows, cols):
        ys, xs = r.nonzero(), c.nonzero()
        if len(ys) == 0:  # an instance without pixels: nothing to paste
            crops.append(masks.new_zeros((0, 0)))
            at.append((0, 0))
            continue
        y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
        crops.append(mask[y0:y1, x0:x1].clone())  # its own storage: a view would send the whole mask
        at.append((y0, x0))
    out = {k: v for k, v in target.items() if k != "masks"}
    out.update(mask_crops=crops, mask_at=tuple(at), mask_size=(int(masks.shape[1]), int(masks.shape[2])))
    return out


def paste_masks(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """``target`` with the (N, H, W) uint8 ``masks`` its crops came from, on ``device``
    (unchanged if it holds whole masks)."""
    if "mask_crops" not in target:
        return target
    crops = target["mask_crops"]
    masks = torch.zeros((len(crops), *target["mask_size"]), dtype=torch.uint8, device=device)
    for mask, crop, (y, x) in zip(masks, crops, target["mask_at"]):
        mask[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    out = {k: v for k, v in target.items() if k not in HANDOFF_KEYS}
    out["masks"] = masks
    return out
