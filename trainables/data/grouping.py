"""Aspect-ratio grouped batches: every training batch holds images of one aspect-ratio group.

A landscape and a portrait image batched together pad to a square (about 1333 x 1333 at
COCO's 800/1333 sizes), so part of every such batch is zeros that cost compute and enter
GroupNorm's statistics. Detectron, detectron2 (``detectron2/data/common.py``,
``AspectRatioGroupedDataset``), mmdetection (``GroupSampler``) and torchvision's detection
references (``GroupedBatchSampler``) all batch within a group: the first three by
orientation, torchvision by the aspect ratio in finer bins (``create_aspect_ratio_groups``,
``--aspect-ratio-group-factor 3`` by default), which pads two 800-px COCO images less. None
of these is an installable library API (torchvision's lives in its ``references/``
scripts), hence this short version of the same rules, which keeps the sampler's position a
pure function of (seed, epoch, rank, offset).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


def aspect_group(width: int, height: int, factor: int) -> int:
    """torchvision's group of an image (references/detection/group_by_aspect_ratio.py): the
    aspect ratio width / height placed among the bin edges ``2 ** linspace(-1, 1, 2 * factor
    + 1)``, so ``2 * factor + 2`` groups; ``factor`` 0 has the one edge 1.0, two groups
    (portrait; landscape or square)."""
    if factor < 0:
        raise ValueError(f"factor must be >= 0, got {factor}")
    edges = [2 ** (i / factor - 1) for i in range(2 * factor + 1)] if factor else [1.0]
    return bisect.bisect_right(edges, width / height)


def grouped_order(indices: Sequence[int], groups: Sequence[int], batch_size: int) -> list[int]:
    """One rank's epoch ``indices`` (dataset positions, in sampled order) reordered into
    ``len(indices) // batch_size`` consecutive batches of one group each.

    The order is walked once and a group's batch is emitted as soon as it holds
    ``batch_size`` images (detectron2's and torchvision's rule), so batches keep the
    shuffle's randomness. The groups' remainders, fewer than ``batch_size`` each, can leave
    the epoch short of batches; the largest remainder is then completed with the first
    images of its own group this epoch, so that every rank has the same number of batches
    (DDP steps in lockstep) and no batch mixes groups. Both steps are those of
    torchvision's ``GroupedBatchSampler`` (references/detection/group_by_aspect_ratio.py).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    buckets: dict[int, list[int]] = {}
    out: list[int] = []
    for index in indices:
        bucket = buckets.setdefault(groups[index], [])
        bucket.append(index)
        if len(bucket) == batch_size:
            out.extend(bucket)
            bucket.clear()
    want = len(indices) // batch_size * batch_size
    while len(out) < want:
        group = max(buckets, key=lambda g: len(buckets[g]))  # ties: the group met first
        rest = buckets.pop(group)
        own = [i for i in indices if groups[i] == group]
        rest += (own * batch_size)[: batch_size - len(rest)]
        out.extend(rest)
    return out
