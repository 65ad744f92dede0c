"""Aspect-ratio grouped batches: every training batch holds images of one orientation.

A landscape and a portrait image batched together pad to a square (about 1333 x 1333 at
COCO's 800/1333 sizes), so part of every such batch is zeros that cost compute and enter
GroupNorm's statistics. Detectron, detectron2 (``detectron2/data/common.py``,
``AspectRatioGroupedDataset``: bucket 0 when width > height, else 1), mmdetection
(``GroupSampler``) and torchvision's detection references (``GroupedBatchSampler``) all
batch within one orientation. None of these is an installable library API
(torchvision's lives in its ``references/`` scripts), hence this short version of the same
rule, which keeps the sampler's position a pure function of (seed, epoch, rank, offset).
"""

from __future__ import annotations

from collections.abc import Sequence


def orientation(width: int, height: int) -> int:
    """detectron2's bucket: 0 for landscape (width > height), 1 for portrait or square."""
    return 0 if width > height else 1


def grouped_order(indices: Sequence[int], groups: Sequence[int], batch_size: int) -> list[int]:
    """One rank's epoch ``indices`` (dataset positions, in sampled order) reordered into
    ``len(indices) // batch_size`` consecutive batches of one group each.

    The order is walked once and a group's batch is emitted as soon as it holds
    ``batch_size`` images (detectron2's and torchvision's rule), so batches keep the
    shuffle's randomness. The groups' remainders, fewer than ``batch_size`` each, can leave
    the epoch short of batches; the largest remainder is then completed with the first
    images of its own group this epoch, so that every rank has the same number of batches
    (DDP steps in lockstep) and no batch mixes orientations. Both steps are those of
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
