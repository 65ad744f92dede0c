"""The embedded stand-in for ImageNet is not the detection task: its classes, textures and
backgrounds share nothing with the detection data, it has more classes than the detection
data has categories, and what it was trained on is on record."""

import json

import numpy as np
import pytest
import torch

from study.spec.resolved import resolve
from trainables.contract.trial_config import PretrainSpec
from trainables.data import shapes
from trainables.data.synthetic import CATEGORIES, KITE
from trainables.model.zoo import TINY_GN
from trainables.pretraining import pretrain_data
from trainables.pretraining.pretrain import classification_images, ensure_pretrained


def test_the_pretraining_classes_share_nothing_with_the_detection_categories():
    detection = {c["name"] for c in CATEGORIES} | {KITE["name"]}
    assert not set(pretrain_data.CLASSES) & detection
    assert len(set(pretrain_data.CLASSES)) == len(pretrain_data.CLASSES) > len(CATEGORIES)
    # Their own fills, not the detection data's.
    assert not set(pretrain_data.TEXTURES) & set(shapes.TEXTURES)
    # Every class draws a shape of its own: at one pose, no two masks nearly coincide.
    masks = {k: pretrain_data.class_mask(k, 48, 24, 24, 18, 0.4) for k in pretrain_data.CLASSES}
    for kind, mask in masks.items():
        assert 0.1 < mask.mean() < 0.9, kind
    kinds = list(masks)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou < 0.85, (a, b, iou)
    # Nor does any nearly coincide with a detection category's shape.
    for name in (c["name"] for c in CATEGORIES):
        theirs = shapes.shape_mask(name, 48, 48, 24, 24, 18, 0.4)
        for kind, mask in masks.items():
            assert (mask & theirs).sum() / (mask | theirs).sum() < 0.85, (kind, name)
    with pytest.raises(ValueError, match="num_classes"):
        pretrain_data.class_names(len(pretrain_data.CLASSES) + 1)


def test_the_images_are_seeded_and_labelled_by_class():
    spec = PretrainSpec(num_classes=12, image_size=32)
    x, y = classification_images(spec, 40, seed=3)
    again, same = classification_images(spec, 40, seed=3)
    assert torch.equal(x, again) and torch.equal(y, same)
    assert x.shape == (40, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert set(y.tolist()) <= set(range(12)) and len(set(y.tolist())) > 6


def test_the_backbones_record_names_its_classes_and_its_accuracy_along_the_way(tmp_path):
    """The cache's meta.json, the rows' folder and study.json say what the stand-in classified."""
    spec = PretrainSpec(num_classes=10, image_size=32, iterations=8, batch_size=8, num_images=64)
    done = ensure_pretrained(TINY_GN, spec, root=tmp_path, log=lambda _m: None)
    meta = json.loads((done.path.parent / "meta.json").read_text())
    assert meta["classes"] == list(pretrain_data.CLASSES[:10]) == done.meta["classes"]
    # Four held-out measurements, the last the reported accuracy; whether the last quarter
    # gained at most 0.01 is recorded.
    assert [i for i, _ in meta["accuracy_curve"]] == [2, 4, 6, 8]
    assert meta["accuracy_curve"][-1][1] == pytest.approx(meta["accuracy"])
    gain = meta["accuracy_curve"][-1][1] - meta["accuracy_curve"][-2][1]
    assert meta["levelled_off"] == (gain <= 0.01)

    import dataclasses

    from study.spec.presets import TOY
    from study.workspace import write_study_file

    write_study_file(str(tmp_path / "S"), resolve(dataclasses.replace(TOY, pretrain=spec)), {}, {})
    study = json.loads((tmp_path / "S" / "study.json").read_text())
    assert study["pretraining_classes"] == list(pretrain_data.CLASSES[:10])
    assert np.isin(study["pretraining_classes"], [c["name"] for c in CATEGORIES]).sum() == 0
