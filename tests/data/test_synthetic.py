"""The generated dataset: COCO's format exactly, deterministic, cached."""

import dataclasses
import json

import numpy as np
from pycocotools import mask as mask_utils

from trainables.contract.trial_config import SyntheticSpec
from trainables.data.dataset import CocoDetection, load_coco
from trainables.data.synthetic import CATEGORIES, ensure_dataset, generate

SPEC = SyntheticSpec(num_train=40, num_search=10, num_test=6, min_side=96, max_side=128, max_objects=5, seed=3)


def test_coco_shape(tmp_path):
    paths = generate(SPEC, tmp_path)
    coco = json.loads(paths.train_annotations.read_text())
    assert set(coco) >= {"images", "annotations", "categories"}
    ids = [c["id"] for c in coco["categories"]]
    assert ids == [c["id"] for c in CATEGORIES] and ids != list(range(1, len(ids) + 1))  # not contiguous
    assert len(coco["images"]) == 40
    for img in coco["images"]:
        assert (paths.train_images / img["file_name"]).exists()
        assert 96 <= img["height"] <= 128 and 96 <= img["width"] <= 128
    kinds = {"polygon": 0, "rle": 0, "crowd": 0}
    api = load_coco(str(paths.train_annotations))
    for ann in coco["annotations"]:
        seg = ann["segmentation"]
        if ann["iscrowd"]:
            assert isinstance(seg["counts"], list)  # COCO's uncompressed RLE for crowds
            kinds["crowd"] += 1
        elif isinstance(seg, list):
            kinds["polygon"] += 1
        else:
            assert isinstance(seg["counts"], str)
            kinds["rle"] += 1
        img = api.imgs[ann["image_id"]]
        mask = CocoDetection.ann_to_mask(ann, img["height"], img["width"])
        assert mask.shape == (img["height"], img["width"])
        # area and xywh bbox agree with the mask (polygons up to rasterization)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
        assert abs(xs.max() + 1 - (x + w)) <= 1 and abs(ys.max() + 1 - (y + h)) <= 1
        assert abs(mask.sum() - ann["area"]) <= max(3, 0.1 * ann["area"])
    assert all(v > 0 for v in kinds.values()), kinds
    search = json.loads(paths.search_annotations.read_text())
    test = json.loads(paths.test_annotations.read_text())
    assert (len(search["images"]), len(test["images"])) == (10, 6)
    ids = [{i["id"] for i in split["images"]} for split in (coco, search, test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # no image id in two splits
    assert search["categories"] == test["categories"] == coco["categories"]


def test_each_split_is_its_own_stream(tmp_path):
    """A split's size changes only that split: the test split came without redrawing the others."""
    a = generate(SPEC, tmp_path / "a")
    b = generate(dataclasses.replace(SPEC, num_test=0), tmp_path / "b")
    for name in ("train_annotations", "search_annotations"):
        assert getattr(a, name).read_text() == getattr(b, name).read_text()
    assert json.loads(b.test_annotations.read_text())["images"] == []


def test_a_fresh_test_split_leaves_the_training_and_search_images_alone(tmp_path):
    """``test_seed`` draws the test images again, after every choice was made on the search
    split; the images that were trained on and chosen with stay as they were."""
    a = generate(SPEC, tmp_path / "a")
    b = generate(dataclasses.replace(SPEC, test_seed=1), tmp_path / "b")
    c = generate(dataclasses.replace(SPEC, test_seed=1), tmp_path / "c")
    for name in ("train_annotations", "search_annotations"):
        assert getattr(a, name).read_text() == getattr(b, name).read_text()
    assert a.test_annotations.read_text() != b.test_annotations.read_text()
    assert b.test_annotations.read_text() == c.test_annotations.read_text()


def test_uncompressed_crowd_rle_decodes_to_the_area(tmp_path):
    paths = generate(SPEC, tmp_path)
    coco = json.loads(paths.train_annotations.read_text())
    for ann in (a for a in coco["annotations"] if a["iscrowd"]):
        rle = mask_utils.frPyObjects(ann["segmentation"], *ann["segmentation"]["size"])
        assert mask_utils.area(rle) == ann["area"]


def test_deterministic(tmp_path):
    a, b = generate(SPEC, tmp_path / "a"), generate(SPEC, tmp_path / "b")
    assert a.train_annotations.read_text() == b.train_annotations.read_text()
    first = sorted(a.train_images.iterdir())[0].name
    assert (a.train_images / first).read_bytes() == (b.train_images / first).read_bytes()


def test_cached_by_spec(tmp_path):
    first = ensure_dataset(SPEC, tmp_path)
    stamp = first.train_annotations.stat().st_mtime_ns
    again = ensure_dataset(SPEC, tmp_path)
    assert again == first and again.train_annotations.stat().st_mtime_ns == stamp
    other = ensure_dataset(SyntheticSpec(num_train=20, num_search=5, min_side=96, max_side=128, seed=4), tmp_path)
    assert other.root != first.root
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
