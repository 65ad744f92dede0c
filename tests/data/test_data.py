"""The COCO dataset class on a fixture with COCO's quirks, subsets, the resumable sampler."""

import pytest
import torch
from pycocotools import mask as mask_utils

from trainables.contract.errors import InputError
from trainables.data.dataset import (
    CocoDetection,
    ResumableDistributedSampler,
    load_coco,
    trainable_image_ids,
)
from trainables.data.flip import hflip
from trainables.data.splits import select_subset
from trainables.evaluation.evaluate import coco_results


def test_training_targets(coco_fixture):
    root, ann_file, _ = coco_fixture
    ds = CocoDetection(str(root), load_coco(str(ann_file)), train=True)
    # image 3 has no annotations, image 4 only a crowd and a degenerate box: both skipped
    assert ds.image_ids == [1, 2]
    assert ds.category_to_label == {1: 1, 18: 2, 90: 3} and ds.label_to_category == {1: 1, 2: 18, 3: 90}
    image, target = ds[0]
    assert image.shape == (3, 48, 64) and image.dtype == torch.uint8  # made float on the device (mask_rcnn.py)
    assert target["labels"].tolist() == [1, 2]
    assert target["boxes"].tolist() == [[5, 5, 15, 25], [30, 10, 60, 30]]  # xywh -> xyxy
    dog = target["masks"][1].numpy()
    assert dog[20, 35] == 1 and dog[20, 55] == 1 and dog[20, 45] == 0  # both polygon parts, gap between
    _, target2 = ds[1]
    assert target2["labels"].tolist() == [3]  # the crowd region is not a training target
    assert target2["masks"].shape == (1, 48, 64) and int(target2["masks"].sum()) == 24 * 20


def test_eval_items_cover_every_image(coco_fixture):
    root, ann_file, _ = coco_fixture
    ds = CocoDetection(str(root), load_coco(str(ann_file)), train=False)
    assert ds.image_ids == [1, 2, 3, 4]
    assert ds[2][1] == {"image_id": 3}


def test_hflip_moves_boxes_and_masks():
    image = torch.zeros(3, 4, 10)
    image[:, :, 0] = 1
    masks = torch.zeros(1, 4, 10, dtype=torch.uint8)
    masks[0, :, 1:3] = 1
    target = {"boxes": torch.tensor([[1.0, 0.0, 3.0, 4.0]]), "masks": masks, "labels": torch.tensor([1])}
    fimage, ftarget = hflip(image, target)
    assert fimage[0, 0, 9] == 1 and fimage[0, 0, 0] == 0
    assert ftarget["boxes"].tolist() == [[7.0, 0.0, 9.0, 4.0]]
    assert ftarget["masks"][0, 0].nonzero().flatten().tolist() == [7, 8]


def test_missing_annotation_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json") as info:
        load_coco(str(tmp_path / "nope.json"), "data.train_annotations")
    assert isinstance(info.value, InputError) and info.value.field == "data.train_annotations"


def test_unreadable_training_image_is_replaced_and_named(coco_fixture):
    """detectron2's practice: the next readable image stands in, and the target says which failed."""
    root, ann_file, _ = coco_fixture
    ds = CocoDetection(str(root), load_coco(str(ann_file)), train=True)
    good_image, good_target = ds[1]
    (root / f"{1:012d}.jpg").write_bytes((root / f"{1:012d}.jpg").read_bytes()[:200])  # truncated JPEG
    image, target = ds[0]
    assert torch.equal(image, good_image) and target["image_id"] == 2
    assert len(target["skipped"]) == 1 and "image 1 " in target["skipped"][0]
    assert "000000000001.jpg" in target["skipped"][0] and "cannot be decoded" in target["skipped"][0]
    (root / f"{1:012d}.jpg").unlink()
    _, target = ds[0]
    assert "missing" in target["skipped"][0]
    (root / f"{2:012d}.jpg").unlink()
    # None readable: a placeholder the step fails on, on every rank (not raised by one rank).
    image, target = ds[0]
    assert image.shape == (3, 32, 32) and len(target["boxes"]) == 0
    assert "11 training images in a row cannot be read" in target["unreadable"]


def test_exif_orientation_is_applied_and_a_size_mismatch_stops_the_trial(coco_fixture):
    """A phone photo stored sideways with an EXIF orientation loads as a labelling tool shows
    it; an image whose size is not its annotation entry's is bad data: training stops on it
    (on every rank, through the step) and evaluation reports it, naming file and sizes."""
    import json

    from PIL import Image

    root, ann_file, _ = coco_fixture
    path = root / f"{1:012d}.jpg"
    upright = Image.open(path).convert("RGB")  # 64 x 48, as the annotations say
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)  # stored 48 x 64
    ds = CocoDetection(str(root), load_coco(str(ann_file)), train=True)
    image, target = ds[ds.image_ids.index(1)]
    assert image.shape == (3, 48, 64) and "unreadable" not in target and len(target["boxes"]) == 2
    blob = json.loads(ann_file.read_text())
    for entry in blob["images"]:
        if entry["id"] == 2:
            entry["width"] *= 3  # a JSON width that disagrees with the file
    ann_file.write_text(json.dumps(blob))
    ds = CocoDetection(str(root), load_coco(str(ann_file)), train=True)
    image, target = ds[ds.image_ids.index(2)]
    assert "skipped" not in target and "000000000002.jpg" in target["unreadable"]
    assert "is 64x48, but the annotations say 192x48" in target["unreadable"]
    evaluation = CocoDetection(str(root), load_coco(str(ann_file)), train=False)
    image, info = evaluation[evaluation.image_ids.index(2)]
    assert image is None and "the annotations say 192x48" in info["error"]
    # Without the annotations' sizes there is nothing to check against.
    _, info = evaluation[evaluation.image_ids.index(1)]
    assert "error" not in info


def test_unreadable_val_image_is_reported_not_skipped(coco_fixture):
    root, ann_file, _ = coco_fixture
    ds = CocoDetection(str(root), load_coco(str(ann_file)), train=False)
    (root / f"{3:012d}.jpg").write_bytes(b"not a jpeg")
    image, info = ds[ds.image_ids.index(3)]
    assert image is None and info["image_id"] == 3 and "000000000003.jpg" in info["error"]


def test_subset_is_seeded_and_stable():
    ids = list(range(100, 300))
    a = select_subset(ids, 0.1, seed=0)
    assert len(a) == 20 and a == select_subset(list(reversed(ids)), 0.1, seed=0)
    assert a != select_subset(ids, 0.1, seed=1)
    assert set(a) <= set(ids)
    assert select_subset(ids, 1.0, seed=5) == ids
    assert len(select_subset(ids, 1e-6, seed=0)) == 1
    with pytest.raises(ValueError, match="data_fraction"):
        select_subset(ids, 0.0, seed=0)


def test_subsets_are_exact_counts_of_the_nominal_set_and_nested():
    """Paper Sec. 5.2: 35k/10k/3.5k/1k of train2017's 118,287, counted on the images trained
    on (fewer: some have no usable annotation), each inside the next larger one."""
    trainable = list(range(0, 117_266 * 3, 3))
    subsets = {n: select_subset(trainable, n / 118_287, seed=0, of=118_287) for n in (35_000, 10_000, 3_500, 1_000)}
    assert {n: len(ids) for n, ids in subsets.items()} == {35_000: 35_000, 10_000: 10_000, 3_500: 3_500, 1_000: 1_000}
    assert set(subsets[1_000]) < set(subsets[3_500]) < set(subsets[10_000]) < set(subsets[35_000]) < set(trainable)
    assert select_subset(trainable, 1.0, seed=0, of=118_287) == trainable  # all there is


def test_sampler_resumes_mid_epoch():
    data = list(range(23))
    full = ResumableDistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=7)
    full.set_epoch(3)
    order = list(full)
    resumed = ResumableDistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=7)
    resumed.set_epoch(3)
    resumed.set_start(4)
    assert list(resumed) == order[4:] and len(resumed) == len(order) - 4
    other_rank = ResumableDistributedSampler(data, num_replicas=2, rank=0, shuffle=True, seed=7)
    other_rank.set_epoch(3)
    assert len(order) == 12 and set(order) | set(other_rank) == set(data)  # padded to equal halves


def test_coco_results_round_trip():
    masks = torch.zeros(2, 1, 6, 8)
    masks[0, 0, 1:3, 2:5] = 0.9
    masks[1, 0, 4:6, 0:2] = 0.7
    out = {
        "boxes": torch.tensor([[2.0, 1.0, 5.0, 3.0], [0.0, 4.0, 2.0, 6.0]]),
        "scores": torch.tensor([0.9, 0.4]),
        "labels": torch.tensor([3, 1]),
        "masks": masks,
    }
    res = coco_results([out, {k: v[:0] for k, v in out.items()}], [7, 8], {1: 1, 2: 18, 3: 90})
    assert [r["image_id"] for r in res] == [7, 7]
    assert [r["category_id"] for r in res] == [90, 1]
    assert res[0]["bbox"] == [2.0, 1.0, 3.0, 2.0]
    assert isinstance(res[0]["segmentation"]["counts"], str)
    decoded = mask_utils.decode({**res[0]["segmentation"], "counts": res[0]["segmentation"]["counts"].encode()})
    assert decoded.sum() == 6 and decoded[1:3, 2:5].all()
    assert "keypoints" not in res[0]
    # A keypoint model's (N, K, 3) keypoints become COCO's flat [x, y, v] list.
    points = torch.tensor([[[2.0, 1.5, 1.0], [4.25, 2.0, 1.0]], [[0.5, 4.0, 1.0], [1.0, 5.5, 1.0]]])
    res = coco_results([{**out, "keypoints": points}], [7], {1: 1, 2: 18, 3: 90})
    assert res[0]["keypoints"] == [2.0, 1.5, 1.0, 4.25, 2.0, 1.0] and res[1]["keypoints"][1] == 4.0


def test_trainable_ids_on_generated_data(coco_fixture):
    _, ann_file, _ = coco_fixture
    assert trainable_image_ids(load_coco(str(ann_file))) == [1, 2]


def test_sampler_decides_flips_reproducibly(coco_fixture):
    root, ann_file, _ = coco_fixture
    ds = CocoDetection(str(root), load_coco(str(ann_file)), train=True)
    sampler = ResumableDistributedSampler(list(range(40)), num_replicas=2, rank=0, shuffle=True, seed=3, hflip_prob=0.5)
    sampler.set_epoch(2)
    items = list(sampler)
    assert all(isinstance(i, tuple) for i in items) and 3 <= sum(f for _, f in items) <= 17
    again = ResumableDistributedSampler(list(range(40)), num_replicas=2, rank=0, shuffle=True, seed=3, hflip_prob=0.5)
    again.set_epoch(2)
    again.set_start(5)
    assert list(again) == items[5:]  # the same flips after a restart
    image, target = ds[(0, True)]
    plain, plain_target = ds[0]
    assert torch.equal(image, plain.flip(-1)) and target["boxes"][0].tolist() == [64 - 15, 5, 64 - 5, 25]
