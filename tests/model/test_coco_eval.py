"""Tests for trainables.evaluation.coco_eval on a small COCO fixture built here.

The fixture has 64x48 images, non-contiguous category ids (3, 7, 90), a crowd region
stored as uncompressed RLE (list counts, the way COCO stores crowd regions), polygon and
compressed-RLE masks, an image without annotations, and small and medium objects. No
image is large enough for a large object, so the APl values are -1.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from trainables.contract.rows import AP_KEYS, BBOX_KEYS, SEGM_KEYS
from trainables.evaluation import coco_eval
from trainables.evaluation.coco_eval import dedupe_by_image, evaluate

W, H = 64, 48
EMPTY_IMAGE = 42


def _rect(x: int, y: int, w: int, h: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8, order="F")
    m[y : y + h, x : x + w] = 1
    return m


def _rle(m: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")}


def _uncompressed_rle(m: np.ndarray) -> dict:
    counts, current, run = [], 0, 0
    for v in m.flatten(order="F"):  # COCO RLE runs go down columns and start with zeros
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [H, W], "counts": counts}


def _gt_dict() -> dict:
    anns = []

    def add(image_id, cat, seg, bbox, area, crowd=0):
        anns.append(
            {
                "id": 100 + len(anns),
                "image_id": image_id,
                "category_id": cat,
                "segmentation": seg,
                "bbox": bbox,
                "area": area,
                "iscrowd": crowd,
            }
        )

    add(11, 3, [[2, 2, 22, 2, 22, 22, 2, 22]], [2, 2, 20, 20], 400.0)  # small
    add(11, 7, [[30, 5, 62, 5, 62, 45, 30, 45]], [30, 5, 32, 40], 1280.0)  # medium
    add(12, 90, [[5, 5, 45, 5, 5, 40]], [5, 5, 40, 35], 700.0)  # triangle: box and mask differ
    add(12, 3, [[50, 30, 60, 30, 60, 40, 50, 40]], [50, 30, 10, 10], 100.0)
    m = _rect(10, 8, 30, 36)
    add(15, 7, _rle(m), [10, 8, 30, 36], float(m.sum()))  # compressed RLE, str counts
    crowd = _rect(0, 0, 40, 48)
    add(20, 3, _uncompressed_rle(crowd), [0, 0, 40, 48], float(crowd.sum()), crowd=1)
    add(20, 3, [[45, 10, 60, 10, 60, 25, 45, 25]], [45, 10, 15, 15], 225.0)
    images = [{"id": i, "width": W, "height": H, "file_name": f"{i}.jpg"} for i in (11, 12, 15, 20, EMPTY_IMAGE)]
    cats = [{"id": 3, "name": "car"}, {"id": 7, "name": "truck"}, {"id": 90, "name": "toothbrush"}]
    return {"images": images, "annotations": anns, "categories": cats}


def _pred(image_id, cat, x, y, w, h, score) -> dict:
    return {
        "image_id": image_id,
        "category_id": cat,
        "bbox": [float(x), float(y), float(w), float(h)],
        "score": score,
        "segmentation": _rle(_rect(x, y, w, h)),
    }


def _predictions() -> list[dict]:
    return [
        _pred(11, 3, 3, 2, 19, 21, 0.9),  # jittered true positives
        _pred(11, 7, 31, 6, 30, 38, 0.8),
        _pred(11, 3, 30, 5, 20, 20, 0.85),  # false positive, nowhere near a car
        _pred(12, 90, 6, 4, 39, 36, 0.95),  # box matches the triangle; its mask overlaps less
        _pred(12, 7, 5, 5, 40, 35, 0.7),  # right place, wrong category
        _pred(12, 3, 49, 31, 11, 9, 0.6),
        _pred(15, 7, 12, 10, 26, 30, 0.5),  # lower-IoU true positive
        _pred(20, 3, 5, 5, 20, 30, 0.75),  # inside the crowd region: ignored, not a false positive
        _pred(20, 3, 46, 11, 14, 14, 0.65),
        _pred(EMPTY_IMAGE, 90, 10, 10, 20, 20, 0.55),  # false positives on the empty image
        _pred(EMPTY_IMAGE, 3, 1, 1, 5, 5, 0.3),
    ]


@pytest.fixture
def gt_path(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(_gt_dict()))
    return path


def _raw_pycocotools(path, results, iou_type) -> list[float]:
    """stats[0:6] straight from pycocotools, independently of the module."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(path))
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:6]]


def test_backends_agree_and_default_is_faster(gt_path):
    # The check the backend choice rests on: faster-coco-eval must equal pycocotools.
    fast = evaluate(gt_path, _predictions(), backend="faster")
    ref = evaluate(gt_path, _predictions(), backend="pycocotools")
    assert list(fast) == list(ref) == list(AP_KEYS)
    for key in AP_KEYS:
        assert fast[key] == pytest.approx(ref[key], abs=1e-12, rel=0), key
    assert coco_eval.DEFAULT_BACKEND == "faster"
    # Guard against an agreement that is trivially true: the fixture yields non-trivial values.
    assert 0.0 < ref["bbox_AP"] < 1.0 and 0.0 < ref["segm_AP"] < 1.0
    assert ref["segm_AP"] != ref["bbox_AP"]


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_perfect_predictions(gt_path, backend):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
    preds = []
    for ann in coco_gt.dataset["annotations"]:
        if ann["iscrowd"]:
            continue
        rle = coco_gt.annToRLE(ann)  # polygons come back with bytes counts, the stored RLE with str
        counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
        preds.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "bbox": ann["bbox"],
                "score": 1.0,
                "segmentation": {"size": list(rle["size"]), "counts": counts},
            }
        )
    got = evaluate(gt_path, preds, backend=backend)
    for prefix in ("bbox", "segm"):
        assert got[f"{prefix}_AP"] == 1.0
        assert got[f"{prefix}_AP50"] == 1.0
        assert got[f"{prefix}_AP75"] == 1.0
        assert got[f"{prefix}_APs"] == 1.0
        assert got[f"{prefix}_APm"] == 1.0
        assert got[f"{prefix}_APl"] == -1.0  # no large ground truth: the evaluator's -1 is kept


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_matches_raw_pycocotools(gt_path, backend):
    preds = _predictions()
    # torchvision's convention: bbox results carry no mask, segm results carry no box.
    boxes = [{k: v for k, v in p.items() if k != "segmentation"} for p in preds]
    masks = [{k: v for k, v in p.items() if k != "bbox"} for p in preds]
    expected = _raw_pycocotools(gt_path, boxes, "bbox") + _raw_pycocotools(gt_path, masks, "segm")
    got = evaluate(gt_path, preds, backend=backend)
    assert [got[k] for k in AP_KEYS] == pytest.approx(expected, abs=1e-12, rel=0)
    assert all(isinstance(v, float) for v in got.values())
    assert got["bbox_APl"] == got["segm_APl"] == -1.0


def test_predictions_not_modified(gt_path):
    preds = _predictions()
    before = copy.deepcopy(preds)
    evaluate(gt_path, preds)
    assert preds == before


def test_empty_predictions_give_zero_everywhere(gt_path):
    for backend in ("faster", "pycocotools"):
        assert evaluate(gt_path, [], backend=backend) == {k: 0.0 for k in AP_KEYS}


def test_bbox_only_predictions_give_bbox_keys_only(gt_path):
    preds = [{k: v for k, v in p.items() if k != "segmentation"} for p in _predictions()]
    got = evaluate(gt_path, preds)
    assert tuple(got) == BBOX_KEYS
    assert got["bbox_AP"] == pytest.approx(_raw_pycocotools(gt_path, preds, "bbox")[0], abs=1e-12)
    assert not set(SEGM_KEYS) & set(got)


def test_mixed_segmentation_presence_rejected(gt_path):
    preds = _predictions()
    del preds[0]["segmentation"]
    with pytest.raises(ValueError, match="segmentation"):
        evaluate(gt_path, preds)


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_gt_object_and_path_agree(gt_path, backend):
    with contextlib.redirect_stdout(io.StringIO()):
        as_object = COCO(str(gt_path))
    from faster_coco_eval import COCO as FasterCOCO

    by_path = evaluate(gt_path, _predictions(), backend=backend)
    by_str = evaluate(str(gt_path), _predictions(), backend=backend)
    by_object = evaluate(as_object, _predictions(), backend=backend)
    by_faster_object = evaluate(FasterCOCO(str(gt_path)), _predictions(), backend=backend)
    assert by_object == by_path == by_str == by_faster_object
    assert by_path["bbox_AP"] > 0.0


def test_unknown_image_id_raises(gt_path):
    preds = _predictions() + [_pred(999, 3, 1, 1, 10, 10, 0.5), _pred(1234, 7, 1, 1, 10, 10, 0.5)]
    with pytest.raises(ValueError, match=r"999.*1234"):
        evaluate(gt_path, preds)


def test_unknown_backend_raises(gt_path):
    with pytest.raises(ValueError, match="backend"):
        evaluate(gt_path, _predictions(), backend="homemade")


def test_dedupe_by_image_keeps_first_rank():
    a1, a2 = {"image_id": 1, "score": 0.9}, {"image_id": 1, "score": 0.8}
    b = {"image_id": 2, "score": 0.7}
    c1, c2 = {"image_id": 3, "score": 0.6}, {"image_id": 3, "score": 0.5}
    # Rank 1 got image 1 again as padding; its copies differ slightly, as recomputed outputs can.
    a1_dup, a2_dup = {"image_id": 1, "score": 0.91}, {"image_id": 1, "score": 0.81}
    merged = dedupe_by_image([[a1, a2, b], [c1, a1_dup, c2, a2_dup]])
    assert merged == [a1, a2, b, c1, c2]
    assert all(x is y for x, y in zip(merged, [a1, a2, b, c1, c2]))
    assert dedupe_by_image([[], [b]]) == [b]
    assert dedupe_by_image([]) == []


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_category_ids_stay_non_contiguous(gt_path, backend):
    # Image 12 holds a category-90 triangle and a category-3 square.
    gt_box = [5.0, 5.0, 40.0, 35.0]
    right = [{"image_id": 12, "category_id": 90, "bbox": gt_box, "score": 0.9}]
    wrong = [{"image_id": 12, "category_id": 7, "bbox": gt_box, "score": 0.9}]
    got_right = evaluate(gt_path, right, backend=backend)
    got_wrong = evaluate(gt_path, wrong, backend=backend)
    # AP averages over categories that have ground truth (3, 7, 90), so one perfect
    # category-90 detection gives 1/3, while the same box labelled 7 matches nothing.
    assert got_right["bbox_AP"] == pytest.approx(1 / 3, abs=1e-12)
    assert got_wrong["bbox_AP"] == 0.0
