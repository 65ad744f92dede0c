"""One COCO-format dataset class for the generated data and for real COCO alike.

Training targets follow torchvision's detection references: polygon and RLE segmentations
become binary masks, boxes go from xywh to xyxy, degenerate boxes are dropped, crowd regions
are kept out of the targets (the model has no notion of "ignore"; COCOeval handles crowds at
evaluation), and images with nothing left to learn from are skipped for training. Category
ids stay COCO's (non-contiguous) in results; the model sees contiguous labels 1..K.

``build_datasets`` assembles a trial's data from its resolved paths (trainables/data/splits.py):
the training subset and the evaluation splits, every file checked before training starts.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import DistributedSampler
from torchvision.transforms.functional import pil_to_tensor

from trainables.contract.errors import InputError
from trainables.contract.trial_config import TrialConfig
from trainables.data.census import trainable
from trainables.data.coco_check import check_images_present, check_same_categories, read_coco_json
from trainables.data.flip import hflip
from trainables.data.grouping import aspect_group, grouped_order
from trainables.data.keypoints import (
    flip_index,
    keypoint_array,
    keypoint_names,
    keypoint_sigmas,
    trains_keypoints,
)
from trainables.data.mask_handoff import crop_masks
from trainables.data.splits import SEARCH, TEST, DataPaths, check_disjoint, held_out_ids, select_subset, subset_blob

# How far a training item looks for a readable image when its own cannot be decoded.
MAX_SUBSTITUTES = 10


def load_coco(annotations: str, field: str | None = None) -> COCO:
    """Load a COCO-format JSON, with an error naming the file (and ``field``) when it is
    missing, not JSON, or has records that refer to unknown images or categories."""
    return index_coco(read_coco_json(annotations, field))


def index_coco(blob: dict[str, Any]) -> COCO:
    """A pycocotools COCO over an already checked COCO-format dict."""
    coco = COCO()
    coco.dataset = blob
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def trainable_image_ids(coco: COCO, keypoints: bool = False) -> list[int]:
    """Images with at least one non-crowd annotation whose box has positive size; for a
    keypoint task, also with a labelled keypoint (trainables/data/keypoints.py)."""
    ids = []
    for img_id in coco.getImgIds():
        anns = coco.imgToAnns.get(img_id, [])
        if any(trainable(a) for a in anns) and (not keypoints or trains_keypoints(anns)):
            ids.append(img_id)
    return sorted(ids)


class CocoDetection(torch.utils.data.Dataset):
    """(image, target) pairs from a COCO-format dataset.

    ``train=True`` yields torchvision detection targets (boxes, labels, masks);
    ``train=False`` yields only ``{"image_id": id}`` since evaluation reads the ground truth
    from the JSON file itself. An item may be asked for as ``(index, flip)``: the sampler
    decides the horizontal flip, so it is a pure function of (seed, epoch, rank, position).
    """

    def __init__(
        self, images_dir: str, coco: COCO, *, train: bool, image_ids: list[int] | None = None, keypoints: bool = False
    ) -> None:
        self.images_dir = images_dir
        self.coco = coco
        self.train = train
        # A keypoint task's targets carry (N, K, 3) keypoints, which a flip reorders.
        self.keypoint_names = keypoint_names(coco) if keypoints else ()
        self.flip_index = flip_index(self.keypoint_names)
        self.category_ids = sorted(coco.getCatIds())
        # label 0 is background in torchvision's detection models.
        self.category_to_label = {c: i + 1 for i, c in enumerate(self.category_ids)}
        self.label_to_category = {i + 1: c for i, c in enumerate(self.category_ids)}
        if image_ids is None:
            image_ids = trainable_image_ids(coco, keypoints) if train else sorted(coco.getImgIds())
        self.image_ids = list(image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def __len__(self) -> int:
        return len(self.image_ids)

    def aspect_groups(self, factor: int) -> list[int]:
        """Each position's aspect-ratio group (trainables/data/grouping.py) from the annotation
        file's width and height."""
        return [aspect_group(self.coco.imgs[i]["width"], self.coco.imgs[i]["height"], factor) for i in self.image_ids]

    def instances(self) -> int:
        """The objects its images train on (non-crowd annotations with a positive box)."""
        return sum(trainable(a) for i in self.image_ids for a in self.coco.imgToAnns.get(i, []))

    def left_out_annotations(self) -> int:
        """Non-crowd annotations of its images whose box is under 1 px: not trained on."""
        anns = (a for i in self.image_ids for a in self.coco.imgToAnns.get(i, []))
        return sum(not a.get("iscrowd", 0) and not trainable(a) for a in anns)

    def image_path(self, image_id: int) -> str:
        return os.path.join(self.images_dir, self.coco.imgs[image_id]["file_name"])

    def load_image(self, image_id: int) -> torch.Tensor:
        """The image as uint8 RGB (C, H, W), turned as its EXIF orientation says (as a
        labelling tool shows it); :class:`UnreadableImage` names file and id, and
        :class:`SizeMismatch` an image whose size is not the annotations' (detectron2's
        ``check_image_size``): its masks and boxes would land in the wrong frame."""
        path = self.image_path(image_id)
        try:
            with Image.open(path) as img:
                raw = img.size
                ImageOps.exif_transpose(img, in_place=True)
                self._check_size(image_id, path, img.size, raw)
                # uint8, a quarter of float32's bytes through the loader's queue and to the
                # device; the model's transform makes it float in [0, 1] there (mask_rcnn.py).
                return pil_to_tensor(img.convert("RGB"))
        except SizeMismatch:
            raise
        except FileNotFoundError:
            raise UnreadableImage(image_id, path, "listed in the annotations but missing") from None
        except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt (PIL's errors)
            raise UnreadableImage(image_id, path, f"cannot be decoded ({err})") from None

    def _check_size(self, image_id: int, path: str, size: tuple[int, int], raw: tuple[int, int]) -> None:
        info = self.coco.imgs[image_id]
        listed = (info.get("width"), info.get("height"))
        if None in listed or tuple(size) == listed:
            return
        turned = f" after its EXIF orientation (stored {raw[0]}x{raw[1]})" if tuple(raw) != tuple(size) else ""
        raise SizeMismatch(
            image_id, path, f"is {size[0]}x{size[1]}{turned}, but the annotations say {listed[0]}x{listed[1]}"
        )

    def __getitem__(self, item: int | tuple[int, bool]) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """A training item; one whose image cannot be read is replaced by the next readable
        one (detectron2's practice), and the target says which it replaced (``skipped``).
        An evaluation item whose image cannot be read has image None and an ``error``."""
        index, flip = item if isinstance(item, tuple) else (item, False)
        image_id = self.image_ids[index]
        if not self.train:
            try:
                return self.load_image(image_id), {"image_id": image_id}
            except UnreadableImage as err:
                return None, {"image_id": image_id, "error": str(err)}
        skipped: list[str] = []
        for k in range(MAX_SUBSTITUTES + 1):
            image_id = self.image_ids[(index + k) % len(self.image_ids)]
            try:
                image = self.load_image(image_id)
                break
            except SizeMismatch as err:  # bad data, not a bad file: the trial stops on it
                return _placeholder(image_id, str(err))
            except UnreadableImage as err:
                skipped.append(str(err))
        else:
            return _placeholder(
                image_id,
                f"{MAX_SUBSTITUTES + 1} training images in a row cannot be read, from {skipped[0]} to {skipped[-1]}",
            )
        target = self.target(image_id, image.shape[1], image.shape[2])
        if skipped:
            target["skipped"] = skipped
        if flip:
            image, target = hflip(image, target, self.flip_index)
        return image, target

    def target(self, image_id: int, height: int, width: int) -> dict[str, Any]:
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if trainable(a)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(0, width)
        boxes[:, 1::2].clamp_(0, height)
        masks = (
            np.stack([self.ann_to_mask(a, height, width) for a in anns])
            if anns
            else np.zeros((0, height, width), np.uint8)
        )
        target = {
            "boxes": boxes,
            "labels": torch.tensor([self.category_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "image_id": image_id,
        }
        if self.keypoint_names:
            target["keypoints"] = keypoint_array(anns, len(self.keypoint_names))
        return target

    @staticmethod
    def ann_to_mask(ann: dict, height: int, width: int) -> np.ndarray:
        """Polygons (one or several parts), compressed or uncompressed RLE -> (H, W) uint8."""
        seg = ann["segmentation"]
        if isinstance(seg, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        elif isinstance(seg["counts"], list):
            rle = mask_utils.frPyObjects(seg, height, width)
        else:
            rle = seg
        return mask_utils.decode(rle)


def _placeholder(image_id: int, error: str) -> tuple[torch.Tensor, dict[str, Any]]:
    """An item that stands for bad input. Not raised here: only this rank would fail, while
    the others wait in the step's all-reduce; the step fails on every rank with ``error``."""
    target = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, 32, 32, dtype=torch.uint8),
        "image_id": image_id,
        "unreadable": error,
    }
    return torch.zeros(3, 32, 32, dtype=torch.uint8), target


class UnreadableImage(InputError):
    """An image the annotations list that is missing or cannot be decoded."""

    def __init__(self, image_id: int, path: str, reason: str) -> None:
        super().__init__(f"image {image_id} ({path}) {reason}", "data.train_images")
        self.image_id, self.path, self.reason = image_id, path, reason

    def __reduce__(self):
        return type(self), (self.image_id, self.path, self.reason)


class SizeMismatch(UnreadableImage):
    """An image whose size (after its EXIF orientation) differs from its annotation entry's."""


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Lists of images and targets, each training target's masks cropped for the hand-off."""
    images, targets = zip(*batch)
    return list(images), [crop_masks(t) for t in targets]


class ResumableDistributedSampler(DistributedSampler):
    """A DistributedSampler that can start part-way through an epoch, and decides flips.

    Training is counted in iterations, not epochs, and a restored run must continue at the
    exact iteration where its checkpoint was taken: ``set_epoch(e)`` + ``set_start(k)``
    yields this rank's samples of epoch ``e`` from position ``k`` on, with the same order a
    run without interruption would have seen. With ``hflip_prob`` it yields
    ``(index, flip)`` pairs whose flips depend only on (seed, epoch, rank, position), so
    they repeat after a restart whatever the number of loader processes. With ``groups``
    (an aspect-ratio group per dataset position) each rank's epoch is reordered into
    batches of ``batch_size`` images of one group (trainables/data/grouping.py).
    """

    def __init__(
        self,
        dataset,
        num_replicas: int,
        rank: int,
        *,
        shuffle: bool,
        seed: int,
        hflip_prob: float = 0.0,
        groups: Sequence[int] | None = None,
        batch_size: int = 1,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0
        self.hflip_prob = hflip_prob
        self.groups, self.batch_size = groups, batch_size

    def set_start(self, start: int) -> None:
        self.start = start

    def __iter__(self):
        indices = list(super().__iter__())
        if self.groups is not None:
            indices = grouped_order(indices, self.groups, self.batch_size)
        if self.hflip_prob:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 1_009 + self.rank)
            flips = (torch.rand(len(indices), generator=g) < self.hflip_prob).tolist()
            indices = list(zip(indices, flips))
        return iter(indices[self.start :])

    def __len__(self) -> int:
        epoch = self.num_samples if self.groups is None else self.num_samples // self.batch_size * self.batch_size
        return epoch - self.start


@dataclass(frozen=True)
class EvalSet:
    """A split that trials are scored on: its images and its ground truth (a path, or the
    COCO of a split held out of the training file)."""

    split: str  # "search" or "test" (trainables/data/splits.py)
    dataset: CocoDetection
    gt: str | COCO
    field: str  # the config field of its images, for errors
    # A keypoint task's OKS sigmas, one per keypoint (None: COCO's 17 person keypoints').
    keypoint_sigmas: tuple[float, ...] | None = None


def build_datasets(cfg: TrialConfig, paths: DataPaths) -> tuple[CocoDetection, list[EvalSet]]:
    """The training subset and the evaluation splits (search first, then test if any),
    checked: annotations parse, categories agree, listed images exist, no image is in two
    splits."""
    train_coco = load_coco(paths.train_annotations, "data.train_annotations")
    keypoints = cfg.data.keypoints
    train = CocoDetection(paths.train_images, train_coco, train=True, keypoints=keypoints)
    pool = train.image_ids
    if paths.search_holdout:
        held = held_out_ids(train_coco.getImgIds(), paths.search_holdout, cfg.data.subset_seed)
        pool = sorted(set(pool) - set(held))
        # A copy: the evaluators write into their ground truth's annotations.
        search_gt = index_coco(copy.deepcopy(subset_blob(train_coco.dataset, held)))
        search_source: str | COCO = search_gt
    else:
        search_gt = load_coco(paths.search_annotations, "data.search_annotations")
        search_source = paths.search_annotations
    train.image_ids = select_subset(pool, cfg.data_fraction, cfg.data.subset_seed, of=cfg.data.fraction_of_images)
    evals = [
        EvalSet(
            SEARCH,
            CocoDetection(paths.search_images, search_gt, train=False, keypoints=keypoints),
            search_source,
            paths.field(SEARCH, "images"),
        )
    ]
    if paths.has_test:
        test_gt = load_coco(paths.test_annotations, "data.test_annotations")
        evals.append(
            EvalSet(
                TEST,
                CocoDetection(paths.test_images, test_gt, train=False, keypoints=keypoints),
                paths.test_annotations,
                "data.test_images",
            )
        )
    # One directory listing each: cheap even for COCO's 118k files, and a missing image is
    # reported here with its id instead of when an epoch reaches it.
    check_images_present(
        paths.train_images, [train_coco.imgs[i] for i in train.image_ids], paths.train_annotations, "data.train_images"
    )
    files = {
        "training": (
            paths.train_images,
            [train_coco.imgs[i]["file_name"] for i in train.image_ids],
            "data.train_images",
        )
    }
    for e in evals:
        ann_field = paths.field(e.split, "annotations")
        check_same_categories(
            train_coco.dataset,
            e.dataset.coco.dataset,
            paths.train_annotations,
            getattr(paths, f"{e.split}_annotations"),
            ann_field,
        )
        images = [e.dataset.coco.imgs[i] for i in e.dataset.image_ids]
        check_images_present(e.dataset.images_dir, images, getattr(paths, f"{e.split}_annotations"), e.field)
        files[e.split] = (e.dataset.images_dir, [img["file_name"] for img in images], ann_field)
    check_disjoint(files)
    if keypoints:
        # Stated by the dataset, read before training so that a bad list fails at once.
        evals = [replace(e, keypoint_sigmas=keypoint_sigmas(e.dataset.coco)) for e in evals]
    if len(train) < cfg.num_workers * cfg.solver.ims_per_worker:
        raise InputError(
            f"data_fraction={cfg.data_fraction} leaves {len(train)} training images, fewer than one "
            f"global batch of {cfg.global_batch}",
            "data_fraction",
        )
    return train, evals
