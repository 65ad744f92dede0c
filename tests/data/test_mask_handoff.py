"""Training masks travel from the loader as crops (trainables/data/mask_handoff.py) and the
model's transform pastes them back: the masks, the resized targets and the losses are the
ones whole masks give, bit for bit, for a fraction of the bytes."""

import torch

from study.spec.presets import SMOKE
from trainables.data.dataset import CocoDetection, collate, load_coco
from trainables.data.mask_handoff import crop_masks, paste_masks
from trainables.data.synthetic import ensure_dataset
from trainables.model.mask_rcnn import build_model
from trainables.model.zoo import TINY_GN


def _items(count=4):
    paths = ensure_dataset(SMOKE.data.synthetic)
    ds = CocoDetection(str(paths.train_images), load_coco(str(paths.train_annotations)), train=True)
    return [ds[(i, i % 2 == 1)] for i in range(count)]  # every other one flipped, as the sampler flips


def test_cropped_masks_paste_back_to_the_whole_masks():
    items = _items()
    images, handed = collate(items)
    whole = [t for _, t in items]
    for t, h in zip(whole, handed):
        assert "masks" not in h and len(h["mask_crops"]) == len(t["masks"]) > 0
        assert torch.equal(paste_masks(h, torch.device("cpu"))["masks"], t["masks"])
        assert paste_masks(t, torch.device("cpu")) is t  # whole masks pass as they are
    full = sum(t["masks"].numel() for t in whole)
    cropped = sum(c.numel() for h in handed for c in h["mask_crops"])
    assert cropped < full / 2, (cropped, full)
    # An instance without pixels, and a target without instances.
    empty = {"masks": torch.zeros(2, 5, 6, dtype=torch.uint8), "boxes": torch.zeros(2, 4)}
    empty["masks"][1, 2, 3] = 1
    back = paste_masks(crop_masks(empty), torch.device("cpu"))
    assert torch.equal(back["masks"], empty["masks"]) and torch.equal(back["boxes"], empty["boxes"])
    none = {"masks": torch.zeros(0, 5, 6, dtype=torch.uint8)}
    assert paste_masks(crop_masks(none), torch.device("cpu"))["masks"].shape == (0, 5, 6)
    assert crop_masks({"image_id": 3}) == {"image_id": 3}  # an evaluation target


def test_the_model_trains_on_cropped_masks_exactly_as_on_whole_ones():
    items = _items()
    images, handed = collate(items)
    whole = [t for _, t in items]
    model = build_model(TINY_GN, 80, min_size=(96,), max_size=128).train()
    batch_whole, targets_whole = model.transform(images, [dict(t) for t in whole])
    batch_handed, targets_handed = model.transform(images, handed)
    assert torch.equal(batch_whole.tensors, batch_handed.tensors)
    for a, b in zip(targets_whole, targets_handed):
        assert torch.equal(a["masks"], b["masks"]) and torch.equal(a["boxes"], b["boxes"])
    torch.manual_seed(0)
    a = model(images, [dict(t) for t in whole])
    torch.manual_seed(0)
    b = model(images, handed)
    assert {k: v.item() for k, v in a.items()} == {k: v.item() for k, v in b.items()}
