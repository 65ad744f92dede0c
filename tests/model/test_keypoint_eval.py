"""Keypoint AP (OKS) from trainables.evaluation.coco_eval equals pycocotools' on a hand-made fixture.

The fixture has people with every keypoint visible, with keypoints labelled but hidden
(v=1) and unlabelled (v=0), a person without labelled keypoints (ignored by COCOeval), a
crowd region, and an image without people that still gets detections. It is evaluated
with COCO's 17 sigmas and with a 3-keypoint task's own sigmas.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from trainables.contract.rows import AP_KEYS, BBOX_KEYS, KEYPOINT_KEYS
from trainables.evaluation.coco_eval import evaluate

W, H = 320, 240


def _person(rng: np.random.Generator, k: int, x: float, y: float, w: float, h: float, visible) -> list[float]:
    """``k`` keypoints inside the box, flags from ``visible`` (2, 1 or 0 per keypoint)."""
    out = []
    for v in visible:
        px, py = (x + rng.uniform(0.1, 0.9) * w, y + rng.uniform(0.1, 0.9) * h) if v else (0.0, 0.0)
        out += [round(px, 1), round(py, 1), v]
    assert len(out) == 3 * k
    return out


def _fixture(k: int, seed: int = 0) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": W, "height": H, "file_name": f"{i}.jpg"} for i in (1, 2, 3, 4)]
    boxes = {
        1: [(20, 30, 80, 160), (150, 20, 120, 200)],
        2: [(40, 40, 60, 120), (200, 60, 90, 150)],
        4: [(10, 10, 200, 200)],
    }  # image 3 has no people
    flags = [
        [2] * k,
        [2, 1, 0] + [2] * (k - 3),  # hidden and unlabelled keypoints
        [0] * k,  # no labelled keypoint: COCOeval ignores this person
        [1] * (k - 1) + [2],
        [2] * k,
    ]
    annotations = []
    for image_id, image_boxes in boxes.items():
        for x, y, w, h in image_boxes:
            visible = flags[len(annotations)]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [x, y, w, h],
                    "area": w * h * 0.6,
                    "iscrowd": 0,
                    "keypoints": _person(rng, k, x, y, w, h, visible),
                    "num_keypoints": sum(v > 0 for v in visible),
                }
            )
    annotations[-1]["iscrowd"] = 1  # a crowd region, its keypoints unlabelled
    annotations[-1]["keypoints"], annotations[-1]["num_keypoints"] = [0.0] * (3 * k), 0
    category = {"id": 1, "name": "person", "keypoints": [f"p{i}" for i in range(k)], "skeleton": []}
    gt = {"images": images, "annotations": annotations, "categories": [category]}

    predictions = []
    for a in annotations[:-1]:
        g = np.array(a["keypoints"], dtype=float).reshape(k, 3)
        x, y, w, h = a["bbox"]
        for shift, score in ((3.0, 0.9), (25.0, 0.4)):  # a close detection and a sloppy one
            pts = g.copy()
            hidden = pts[:, 2] == 0
            pts[hidden, 0], pts[hidden, 1] = x + w / 2, y + h / 2
            pts[:, :2] += rng.normal(0, shift, (k, 2))
            pts[:, 2] = rng.uniform(0.2, 1.0, k)
            predictions.append(
                {
                    "image_id": a["image_id"],
                    "category_id": 1,
                    "bbox": [x + shift, y, w, h],
                    "score": score,
                    "keypoints": [round(float(v), 2) for v in pts.ravel()],
                }
            )
    # Detections on the image without people: false positives.
    for score in (0.8, 0.3):
        pts = np.column_stack([rng.uniform(0, W, k), rng.uniform(0, H, k), np.ones(k)])
        box = [float(pts[:, 0].min()), float(pts[:, 1].min()), 40.0, 60.0]
        predictions.append(
            {"image_id": 3, "category_id": 1, "bbox": box, "score": score, "keypoints": pts.ravel().tolist()}
        )
    return gt, predictions


def _pycocotools_keypoints(gt: dict, predictions: list[dict], sigmas) -> list[float]:
    """The reference: pycocotools' COCOeval on results carrying only keypoints (as
    torchvision's references/detection/coco_eval.py hands them over)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        results = [{k: v for k, v in p.items() if k != "bbox"} for p in copy.deepcopy(predictions)]
        ev = COCOeval(coco, coco.loadRes(results), "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.array(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:5]]


@pytest.mark.parametrize(("k", "sigmas"), [(17, None), (3, (0.05, 0.08, 0.1))], ids=["coco-17", "toy-3"])
@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_keypoint_ap_equals_pycocotools(tmp_path, k, sigmas, backend):
    gt, predictions = _fixture(k)
    expected = _pycocotools_keypoints(gt, predictions, sigmas)
    kept = copy.deepcopy(predictions)
    coco = COCO()
    with contextlib.redirect_stdout(io.StringIO()):
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
    got = evaluate(coco, predictions, backend=backend, keypoint_sigmas=sigmas)
    assert predictions == kept  # the caller's list is not modified
    assert [got[key] for key in KEYPOINT_KEYS] == pytest.approx(expected, abs=1e-12)
    # Not trivial: some detections match and some do not, and the medium and large ranges
    # both hold people.
    assert 0.05 < got["keypoints_AP"] < 0.95 and all(got[key] >= 0 for key in KEYPOINT_KEYS)
    assert set(BBOX_KEYS) <= set(got) and not set(AP_KEYS) - set(BBOX_KEYS) & set(got)


def test_sigmas_change_the_score_and_mixed_or_empty_predictions():
    gt, predictions = _fixture(3)
    coco = COCO()
    with contextlib.redirect_stdout(io.StringIO()):
        coco.dataset = gt
        coco.createIndex()
    tight = evaluate(coco, predictions, keypoint_sigmas=(0.01, 0.01, 0.01))["keypoints_AP"]
    loose = evaluate(coco, predictions, keypoint_sigmas=(0.3, 0.3, 0.3))["keypoints_AP"]
    assert tight < loose
    with pytest.raises(ValueError, match="carry keypoints; all or none must"):
        evaluate(coco, [predictions[0], {k: v for k, v in predictions[1].items() if k != "keypoints"}])
    assert evaluate(coco, [], keypoint_sigmas=(0.1, 0.1, 0.1)) == dict.fromkeys(AP_KEYS + KEYPOINT_KEYS, 0.0)
