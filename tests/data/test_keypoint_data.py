"""A keypoint task's training data: names, (N, K, 3) targets, the flip, the images it trains on."""

import json

import numpy as np
import pytest
import torch

from trainables.contract.errors import InputError
from trainables.data.dataset import CocoDetection, load_coco, trainable_image_ids
from trainables.data.flip import hflip
from trainables.data.keypoints import flip_index, hflip_keypoints, keypoint_sigmas
from trainables.evaluation.coco_eval import evaluate

NAMES = ["nose", "left_hand", "right_hand"]
COCO_17 = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
]


def test_flip_index_swaps_left_and_right():
    assert flip_index(NAMES) == [0, 2, 1]
    # detectron2's COCO person flip map, as torchvision's references write it out.
    assert flip_index(COCO_17) == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert flip_index(["centre", "top", "leftmost"]) == [0, 1, 2]


def test_flipped_keypoints_mirror_swap_and_keep_unlabelled_at_zero():
    points = torch.tensor([[[10.0, 5, 2], [20, 6, 1], [0, 0, 0]]])
    flipped = hflip_keypoints(points, 64, [0, 2, 1])
    assert flipped.tolist() == [[[54.0, 5, 2], [0, 0, 0], [44, 6, 1]]]
    assert torch.equal(hflip_keypoints(flipped, 64, [0, 2, 1]), points)  # twice is the identity


def _keypoint_fixture(coco_fixture):
    """The COCO fixture with keypoints on its person (category 1, image 1) alone."""
    root, ann_file, blob = coco_fixture
    blob["categories"] = [{**c, "keypoints": NAMES} if c["id"] == 1 else c for c in blob["categories"]]
    for a in blob["annotations"]:
        if a["id"] == 11:
            a["keypoints"], a["num_keypoints"] = [8.0, 10, 2, 6, 20, 1, 0, 0, 0], 2
    ann_file.write_text(json.dumps(blob))
    return root, ann_file


def test_targets_carry_keypoints_and_images_without_people_are_skipped(coco_fixture):
    root, ann_file = _keypoint_fixture(coco_fixture)
    coco = load_coco(str(ann_file))
    assert trainable_image_ids(coco) == [1, 2] and trainable_image_ids(coco, keypoints=True) == [1]
    ds = CocoDetection(str(root), coco, train=True, keypoints=True)
    assert ds.keypoint_names == tuple(NAMES) and ds.image_ids == [1]
    image, target = ds[0]
    # The person's keypoints, and zeros for the dog, which has none.
    assert target["keypoints"].shape == (2, 3, 3) and target["keypoints"][0].tolist() == [
        [8.0, 10, 2],
        [6, 20, 1],
        [0, 0, 0],
    ]
    assert not target["keypoints"][1].any()
    _, flipped = ds[(0, True)]
    assert torch.equal(flipped["keypoints"], hflip(image, target, [0, 2, 1])[1]["keypoints"])
    assert flipped["keypoints"][0].tolist() == [[56.0, 10, 2], [0, 0, 0], [58, 20, 1]]
    assert "keypoints" not in CocoDetection(str(root), coco, train=True)[0][1]  # not a keypoint task


def test_a_keypoint_task_without_keypoint_names_is_bad_input(coco_fixture):
    _root, ann_file, _blob = coco_fixture
    with pytest.raises(InputError, match="no category lists them") as err:
        CocoDetection(str(_root), load_coco(str(ann_file)), train=True, keypoints=True)
    assert err.value.field == "data.train_annotations"


def test_the_generated_keypoint_task_is_coco_person_keypoints_shaped(tmp_path):
    """Kites with 4 named keypoints: one category with names, skeleton and sigmas; every
    shown keypoint inside its object's box, hidden ones under a later object, the ones
    outside the image unlabelled; it trains and flips through the same dataset class."""
    from trainables.contract.trial_config import SyntheticSpec
    from trainables.data.shapes import KITE_KEYPOINTS
    from trainables.data.synthetic import generate

    spec = SyntheticSpec(num_train=24, num_search=4, num_test=4, max_occlusion=0.5, keypoints=True, seed=3)
    paths = generate(spec, tmp_path)
    blob = json.loads(paths.train_annotations.read_text())
    (category,) = blob["categories"]
    assert category["keypoints"] == list(KITE_KEYPOINTS) == ["apex", "left_base", "right_base", "centre"]
    assert len(category["keypoint_sigmas"]) == 4 and category["skeleton"]
    flags = []
    for a in blob["annotations"]:
        points = np.array(a["keypoints"]).reshape(4, 3)
        assert a["num_keypoints"] == int((points[:, 2] > 0).sum())
        if a["iscrowd"]:
            assert not points.any()
            continue
        x, y, w, h = a["bbox"]
        shown = points[points[:, 2] == 2]  # on the visible part (a sharp tip may not rasterize)
        assert ((shown[:, 0] >= x - 3) & (shown[:, 0] <= x + w + 3)).all()
        assert ((shown[:, 1] >= y - 3) & (shown[:, 1] <= y + h + 3)).all()
        assert not points[points[:, 2] == 0].any()
        flags += points[:, 2].tolist()
    assert {0, 1, 2} <= set(flags)  # off the image, hidden, shown: all three occur
    coco = load_coco(str(paths.train_annotations))
    ds = CocoDetection(str(paths.train_images), coco, train=True, keypoints=True)
    assert ds.flip_index == [0, 2, 1, 3] and len(ds) > 0
    image, target = ds[(0, True)]
    assert target["keypoints"].shape[1:] == (4, 3) and image.shape[0] == 3
    # Scored with the category's sigmas, the ground truth itself as detections is perfect.
    sigmas = keypoint_sigmas(coco)
    assert sigmas == tuple(category["keypoint_sigmas"])
    truth = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0, "keypoints": a["keypoints"]}
        for a in blob["annotations"]
        if not a["iscrowd"] and a["num_keypoints"]
    ]
    assert evaluate(str(paths.train_annotations), truth, keypoint_sigmas=sigmas)["keypoints_AP"] == pytest.approx(1.0)


def test_sigmas_come_from_the_category_or_are_cocos(coco_fixture):
    root, ann_file = _keypoint_fixture(coco_fixture)
    with pytest.raises(InputError, match="3 keypoints need their OKS sigmas"):
        keypoint_sigmas(load_coco(str(ann_file)))
    blob = json.loads(ann_file.read_text())
    person = next(c for c in blob["categories"] if c["id"] == 1)
    person["keypoint_sigmas"] = [0.05, 0.06, 0.06]
    ann_file.write_text(json.dumps(blob))
    assert keypoint_sigmas(load_coco(str(ann_file))) == (0.05, 0.06, 0.06)
    person["keypoint_sigmas"] = [0.05, 0.06]
    ann_file.write_text(json.dumps(blob))
    with pytest.raises(InputError, match="one list of 3 positive values"):
        keypoint_sigmas(load_coco(str(ann_file)))
    person["keypoints"], person["keypoint_sigmas"] = COCO_17, None
    ann_file.write_text(json.dumps(blob))
    assert keypoint_sigmas(load_coco(str(ann_file))) is None  # COCO's own, in the evaluator
