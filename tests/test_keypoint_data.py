"""A keypoint task's training data: names, (N, K, 3) targets, the flip, the images it trains on."""

import json

import pytest
import torch

from trainables.data import CocoDetection, hflip, load_coco, trainable_image_ids
from trainables.errors import InputError
from trainables.keypoints import flip_index, hflip_keypoints

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
