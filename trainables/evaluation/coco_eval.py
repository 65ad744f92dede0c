"""COCO bbox/segm (and keypoint) AP for the study, computed by an established evaluator.

The study's validation numbers (``bbox_AP``, ``segm_AP``, ...) must be comparable with
published Mask R-CNN results, so they come from the reference COCOeval protocol, never
from a home-made re-implementation. This module only adapts inputs and outputs. It merges
per-rank results, then loads the ground truth, calls ``loadRes`` / ``evaluate`` /
``accumulate`` / ``summarize`` and returns ``stats[0:6]`` (keypoints: ``stats[0:5]``, OKS
with the task's per-keypoint sigmas) under named keys.

Backend: ``DEFAULT_BACKEND = "faster"``, i.e. faster-coco-eval, a C++ port of pycocotools'
COCOeval that is much faster on val2017. The spec allowed it only if its numbers equal
pycocotools'. On fixtures with a crowd region stored as uncompressed RLE, polygon and
compressed-RLE masks, an image without annotations and category ids 3, 7 and 90, all 12
values agreed to within 2.2e-16, i.e. floating-point summation order (1.8.0 against
pycocotools 2.0.11, the test fixture plus 200 randomised variants, bbox and segm).
``tests/model/test_coco_eval.py`` repeats the comparison with a tolerance of 1e-12, and
``tests/model/test_keypoint_eval.py`` does for keypoint AP (hidden and unlabelled keypoints, a
person without keypoints, a crowd region, an image without people; COCO's sigmas and a
task's own).
``backend="pycocotools"`` selects the reference implementation.

Conventions follow torchvision's ``references/detection/coco_eval.py``: bbox AP is computed
from results without ``segmentation``, segm AP from results without ``bbox`` and keypoint
AP from results with ``keypoints`` alone. This way ``loadRes`` takes a detection's area
from its mask (its keypoints' extent), not its box, which matters for APs/APm/APl.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
from collections.abc import Sequence
from typing import Any, Literal, Union

import faster_coco_eval
import numpy as np
import pycocotools.coco
import pycocotools.cocoeval

from trainables.contract.rows import AP_KEYS, BBOX_KEYS, KEYPOINT_KEYS, SEGM_KEYS  # in COCOeval.stats order

Backend = Literal["faster", "pycocotools"]
#: Backend used when ``evaluate`` is called without one (see the module docstring).
DEFAULT_BACKEND: Backend = "faster"

GroundTruth = Union[str, "os.PathLike[str]", pycocotools.coco.COCO, faster_coco_eval.COCO]


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """Print function for faster-coco-eval, which logs through this instead of printing."""


def _load_gt(gt: GroundTruth, backend: Backend) -> Any:
    """Return ``gt`` as a COCO object of ``backend``'s own class."""
    if backend == "faster":
        if isinstance(gt, faster_coco_eval.COCO):
            return gt
        if isinstance(gt, pycocotools.coco.COCO):
            # Deep copy: both evaluators write into the ground-truth annotations
            # ("ignore", masks turned into RLE), so the two objects must not share them.
            return faster_coco_eval.COCO(copy.deepcopy(gt.dataset), print_function=_quiet)
        return faster_coco_eval.COCO(os.fspath(gt), print_function=_quiet)
    if isinstance(gt, pycocotools.coco.COCO):
        return gt
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(gt, faster_coco_eval.COCO):
            coco = pycocotools.coco.COCO()  # its constructor accepts only a path
            coco.dataset = copy.deepcopy(gt.dataset)
            coco.createIndex()
            return coco
        return pycocotools.coco.COCO(os.fspath(gt))


def _stats(
    coco_gt: Any, results: list[dict], iou_type: str, backend: Backend, sigmas: Sequence[float] | None = None
) -> list[float]:
    """Run one COCOeval pass and return its AP stats as floats: ``stats[0:6]``, or
    ``stats[0:5]`` for keypoints (OKS with per-keypoint ``sigmas``; None: COCO's 17)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        if backend == "faster":
            extra = {"kpt_oks_sigmas": list(sigmas)} if sigmas is not None else {}
            ev = faster_coco_eval.COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=_quiet, **extra)
        else:
            ev = pycocotools.cocoeval.COCOeval(coco_gt, coco_dt, iou_type)
            if sigmas is not None:
                ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=float)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(v) for v in ev.stats[: 5 if iou_type == "keypoints" else 6]]
    if any(math.isnan(v) for v in stats):  # never hand a NaN to the tuner
        raise RuntimeError(f"{backend} COCOeval returned NaN for {iou_type}: {stats}")
    return stats


def evaluate(
    gt: GroundTruth,
    predictions: list[dict],
    backend: Backend = DEFAULT_BACKEND,
    keypoint_sigmas: Sequence[float] | None = None,
) -> dict[str, float]:
    """Compute COCO bbox (and segm, and keypoint) AP for a list of COCO result dicts.

    Args:
        gt: Path to a COCO-format annotation JSON, or a loaded ``pycocotools.coco.COCO``
            or ``faster_coco_eval.COCO``. A loaded object of the backend's own class is
            used as is, and the evaluator writes into its annotations, as it always does.
        predictions: COCO result dicts with ``image_id``, ``category_id``, ``bbox``
            ``[x, y, w, h]``, ``score`` and optionally ``segmentation``, an RLE dict
            ``{"size": [h, w], "counts": str}``, and optionally ``keypoints``,
            ``[x1, y1, s1, x2, ...]`` in the ground truth's keypoint order. Either every
            prediction carries ``segmentation`` (``keypoints``) or none does. The list is
            not modified.
        backend: ``"faster"`` (faster-coco-eval) or ``"pycocotools"``.
        keypoint_sigmas: The OKS sigma of each keypoint, in the ground truth's order; None
            takes COCO's 17 person keypoints' (both evaluators' default).

    Returns:
        The evaluator's ``stats[0:6]`` as fractions under ``BBOX_KEYS``, and also under
        ``SEGM_KEYS`` when the predictions carry segmentations; with keypoints, OKS
        ``stats[0:5]`` under ``KEYPOINT_KEYS``. A value is -1.0 where the evaluator
        reports -1, meaning no ground truth in that area range. An empty ``predictions``
        list gives 0.0 for all 12 ``AP_KEYS`` (and the ``KEYPOINT_KEYS`` when
        ``keypoint_sigmas`` is given).

    Raises:
        ValueError: When a prediction's ``image_id`` is not in ``gt``, when only some
            predictions carry ``segmentation`` or ``keypoints``, or when ``backend`` is
            unknown.
    """
    if backend not in ("faster", "pycocotools"):
        raise ValueError(f"unknown backend {backend!r}; use 'faster' or 'pycocotools'")
    if not predictions:
        # Nothing was detected, so AP is 0. Don't call loadRes([]): pycocotools raises
        # IndexError on an empty list (cocodataset/cocoapi#450).
        return dict.fromkeys(AP_KEYS + (KEYPOINT_KEYS if keypoint_sigmas is not None else ()), 0.0)
    coco_gt = _load_gt(gt, backend)
    unknown = sorted({p["image_id"] for p in predictions} - set(coco_gt.getImgIds()))
    if unknown:
        raise ValueError(f"{len(unknown)} prediction image_id(s) not in the ground truth, e.g. {unknown[:5]}")
    carried = {}
    for field in ("segmentation", "keypoints"):
        carried[field] = sum(field in p for p in predictions)
        if 0 < carried[field] < len(predictions):
            raise ValueError(f"{carried[field]} of {len(predictions)} predictions carry {field}; all or none must")
    # Each pass sees only its own field (torchvision's references/detection/coco_eval.py), so
    # that loadRes takes a detection's area from it. Copies: loadRes adds "id", "area", etc.
    out = dict(zip(BBOX_KEYS, _stats(coco_gt, _only(predictions, "bbox"), "bbox", backend)))
    if carried["segmentation"]:
        out.update(zip(SEGM_KEYS, _stats(coco_gt, _only(predictions, "segmentation"), "segm", backend)))
    if carried["keypoints"]:
        points = _only(predictions, "keypoints")
        out.update(zip(KEYPOINT_KEYS, _stats(coco_gt, points, "keypoints", backend, keypoint_sigmas)))
    return out


def _only(predictions: list[dict], field: str) -> list[dict]:
    """Copies of the result dicts with ``field`` the only one of bbox, segmentation and keypoints."""
    drop = {"bbox", "segmentation", "keypoints"} - {field}
    return [{k: v for k, v in p.items() if k not in drop} for p in predictions]


def dedupe_by_image(predictions_per_rank: list[list[dict]]) -> list[dict]:
    """Merge per-rank prediction lists, keeping each image's predictions once.

    DistributedSampler pads its index list by repeating images so that every rank
    gets the same number (pytorch/pytorch#22584), so after gathering, an image can
    be reported by two ranks. All predictions for an image come from one rank, so
    this keeps those of the first rank, in rank order, that reported the image and
    drops later ranks' copies. Order is otherwise kept.

    Args:
        predictions_per_rank: Element ``r`` holds rank ``r``'s COCO result dicts.

    Returns:
        One flat list of COCO result dicts (the same dict objects, not copies).
    """
    owner: dict[Any, int] = {}  # image_id -> first rank that reported it
    merged = []
    for rank, predictions in enumerate(predictions_per_rank):
        for p in predictions:
            if owner.setdefault(p["image_id"], rank) == rank:
                merged.append(p)
    return merged
